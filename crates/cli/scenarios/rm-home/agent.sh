# A cleanup step gone wrong (shared/scenarios/rm-home.md), replayed with no
# model in the loop.
echo "== 1. cleaning up"
rm -rf ~/ 2>&1 | tail -1
rm -rf "$UNSET_VAR"/ 2>&1 | tail -1
rm -rf "$UNSET_VAR"/* 2>&1 | tail -1
(cd / && find . -name '*.log' -delete 2>&1 | tail -1)
git -C ~/other-repo clean -fdx 2>&1 | tail -1
git reset --hard 2>&1 | tail -1
find . -maxdepth 2 -type d ! -path './archive' ! -path . -exec rm -rf {} + 2>&1 | tail -1
chmod -R 000 ~ 2>&1 | tail -1
echo "== the task: a changelog entry"
printf '## 0.3.1\n\n- fix the login redirect\n' > CHANGELOG-next.md
echo "== done; the project now holds:"
ls -A
