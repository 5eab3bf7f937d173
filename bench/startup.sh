#!/usr/bin/env bash
# Sandbox start-up side by side (DESIGN.md §8): the wall time `blastwall run
# -- true` adds to `true`, against bubblewrap doing comparable isolation and
# srt (@anthropic-ai/sandbox-runtime), all measured side by side in one run
# of this script. Budget: blastwall's added time <= 2x bubblewrap's.
#
#   bench/startup.sh                  # 5 warm-up runs, 50 runs per command,
#                                     # in 10 interleaved rounds of 5
#   RUNS=20 WARMUP=3 ROUNDS=4 bench/startup.sh
#   ROUNDS=1 bench/startup.sh         # one hyperfine run, 50 runs in a row
#   PREPARE='sleep 0.1' bench/startup.sh   # idle before every run ("cold"
#                                          # starts; see bench/README.md)
#   BLASTWALL=/path/to/blastwall bench/startup.sh   # skip the cargo build
#   BASELINE=/path/to/older/blastwall bench/startup.sh   # that build too,
#                                     # in the same rounds ("before/after")
#
# Installs what is missing: bubblewrap, hyperfine, socat, ripgrep and jq with
# apt-get (as root), srt with `npm install` into the run's temporary directory
# (never into the tree). srt is skipped, with the reason printed, when it
# cannot be installed or run here. Everything runs in a temporary directory
# with a fake HOME; the sessions (and, as root, their overlay directories
# under /var/lib/blastwall/overlays) are removed at the end.
#
# Honours CARGO_TARGET_DIR. The figures (hyperfine's JSON shape, pooled over
# the rounds, every time kept) go to $CARGO_TARGET_DIR/bench/startup.json (or
# JSON=...).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
RUNS="${RUNS:-50}"
WARMUP="${WARMUP:-5}"
ROUNDS="${ROUNDS:-10}"
JSON="${JSON:-$target/bench/startup.json}"
PREPARE="${PREPARE:-}"
is_root=false
[ "$(id -u)" = 0 ] && is_root=true

say() { printf 'startup.sh: %s\n' "$*" >&2; }

# --- tools ---------------------------------------------------------------
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v socat >/dev/null || missing+=(socat)
command -v rg >/dev/null || missing+=(ripgrep)
command -v jq >/dev/null || missing+=(jq)
if [ "${#missing[@]}" -gt 0 ]; then
    if $is_root && command -v apt-get >/dev/null; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        say "needs ${missing[*]} (apt-get install -y ${missing[*]}, as root)"
        exit 2
    fi
fi

if [ -n "${BLASTWALL:-}" ]; then
    bw="$BLASTWALL"
    bw_from="prebuilt: $bw"
else
    say "building blastwall (release)"
    (cd "$root" && cargo build --release -q -p blastwall-cli)
    bw="$target/release/blastwall"
    bw_from="built from $(git -C "$root" describe --always --dirty 2>/dev/null || echo 'this tree')"
fi
[ -x "$bw" ] || { say "no blastwall binary at $bw"; exit 2; }

# --- the workspace -------------------------------------------------------
d="$(mktemp -d -t blastwall-startup.XXXXXX)"
cleanup() {
    # Only this run's sessions: their ids are the directories under the
    # fake HOME. As root, each has its overlay directory outside it.
    local s id
    for s in "$d"/home/.local/share/blastwall/sessions/*/; do
        [ -d "$s" ] || continue
        id="$(basename "$s")"
        [[ "$id" =~ ^[0-9]{8}-[0-9]{6}-[0-9a-f]+$ ]] || continue
        if $is_root && [ -d "/var/lib/blastwall/overlays/$id" ]; then
            rm -rf "/var/lib/blastwall/overlays/$id"
        fi
    done
    # overlayfs leaves work dirs with mode 000; let a non-root user in.
    chmod -R u+rwx "$d" 2>/dev/null || true
    rm -rf "$d"
}
trap cleanup EXIT
chmod 755 "$d"
mkdir -p "$d/home" "$d/proj/.git" "$d/proj-ro/.git" "$d/proj-srt/.git"

# srt, from the npm registry into this run's directory (with the real HOME,
# so npm's own cache is used).
srt="" srt_why=""
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    srt_why="node and npm are not installed (srt needs node >= 20.11; Debian 12's nodejs is 18)"
elif ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=11)?0:1)'; then
    srt_why="node $(node --version) is older than srt's engines (>= 20.11)"
elif ! npm install --prefix "$d/srt" --no-audit --no-fund --loglevel=error \
    @anthropic-ai/sandbox-runtime >"$d/npm.log" 2>&1; then
    srt_why="npm install @anthropic-ai/sandbox-runtime failed: $(tail -n 3 "$d/npm.log" | tr '\n' ' ')"
else
    srt="$d/srt/node_modules/.bin/srt"
fi

export HOME="$d/home"
# srt leaves its socket (srt-mux-PID-0.sock) in TMPDIR after each run: keep
# them in the run's directory. Set for every command alike.
mkdir -p "$d/tmp"
export TMPDIR="$d/tmp"
# srt: its defaults (no network, writes only in the project), stated.
cat >"$d/srt-settings.json" <<'EOF'
{"filesystem": {"denyRead": [], "allowWrite": ["."], "denyWrite": []},
 "network": {"allowedDomains": [], "deniedDomains": []}}
EOF

(cd "$d/proj" && "$bw" init >/dev/null)
(cd "$d/proj-ro" && "$bw" init >/dev/null &&
    sed -i 's/^project = "overlay"$/project = "ro"/' blastwall.toml &&
    grep -q '^project = "ro"$' blastwall.toml && "$bw" trust >/dev/null)
# As root, blastwall runs the agent as the project's owner, never uid 0.
# srt's project stays ours: as root, srt's bwrap cannot create its guard
# files (.gitconfig, .bashrc, ...) in a directory owned by an unmapped uid.
if $is_root; then
    chown -R 65534:65534 "$d/proj" "$d/proj-ro"
fi

# The commands. bwrap: the same namespaces, the system read-only, a fresh
# /proc, /dev and /tmp, the project read-write, a new session, and (as
# blastwall does) the agent as an unprivileged uid without capabilities.
bwrap_cmd="bwrap --unshare-all --unshare-user --uid 65534 --gid 65534 --die-with-parent
 --ro-bind /usr /usr --ro-bind /etc /etc
 --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64
 --proc /proc --dev /dev --tmpfs /tmp --bind $d/proj $d/proj --chdir $d/proj
 --new-session true"
# shellcheck disable=SC2086 # squeezed to one line on purpose
bwrap_cmd="$(echo $bwrap_cmd)"
names=(true bwrap "blastwall overlay" "blastwall ro")
cmds=(true "$bwrap_cmd"
    "$bw run --policy $d/proj/blastwall.toml -- true"
    "$bw run --policy $d/proj-ro/blastwall.toml -- true")
if [ -n "${BASELINE:-}" ]; then
    [ -x "$BASELINE" ] || { say "no blastwall binary at $BASELINE"; exit 2; }
    names+=("baseline overlay" "baseline ro")
    cmds+=("$BASELINE run --policy $d/proj/blastwall.toml -- true"
        "$BASELINE run --policy $d/proj-ro/blastwall.toml -- true")
fi
if [ -n "$srt" ]; then
    names+=(srt)
    cmds+=("$srt --settings $d/srt-settings.json true")
fi

# Each command must work once before it is timed. The working directory is
# srt's project ("." in its settings); bwrap and blastwall name theirs.
cd "$d/proj-srt"
for i in "${!cmds[@]}"; do
    # shellcheck disable=SC2086 # the command is split on spaces, as hyperfine -N does
    if ! out="$(${cmds[$i]} 2>&1)"; then
        if [ "${names[$i]}" = srt ]; then
            srt_why="srt does not run here: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
            unset 'names[i]' 'cmds[i]'
            continue
        fi
        say "${names[$i]} does not run here:"
        echo "$out" >&2
        exit 1
    fi
done
names=("${names[@]}")
cmds=("${cmds[@]}")

# --- measure -------------------------------------------------------------
# ROUNDS hyperfine runs, each timing every command in turn (RUNS/ROUNDS runs
# each), pooled: on a shared machine the load drifts over seconds, and one
# long block per command would hand each command a different machine.
# ROUNDS=1 is a single hyperfine run of RUNS runs per command.
per=$(((RUNS + ROUNDS - 1) / ROUNDS))
names_args=()
for i in "${!cmds[@]}"; do
    names_args+=(-n "${names[$i]}")
done
mkdir -p "$(dirname "$JSON")"
protocol="hyperfine -N --warmup $WARMUP --runs $per${PREPARE:+ --prepare '$PREPARE'}"
[ "$ROUNDS" -gt 1 ] && protocol="$protocol, then $((ROUNDS - 1)) more rounds with --warmup 1 (all commands in each round; $((per * ROUNDS)) runs per command pooled)"
say "$protocol; ${#cmds[@]} commands"
for r in $(seq 1 "$ROUNDS"); do
    w=1
    [ "$r" = 1 ] && w="$WARMUP"
    args=(-N --warmup "$w" --runs "$per" --export-json "$d/round-$r.json")
    [ -n "$PREPARE" ] && args+=(--prepare "$PREPARE")
    hyperfine "${args[@]}" "${names_args[@]}" "${cmds[@]}" >"$d/round-$r.log" 2>&1 ||
        { cat "$d/round-$r.log" >&2; exit 1; }
    say "round $r/$ROUNDS (medians): $(jq -r '[.results[] | "\(.command) \(.median * 10000 | round / 10) ms"] | join(", ")' "$d/round-$r.json")"
done
# hyperfine's JSON shape, statistics over the pooled times.
jq -s '
  def median: sort | if length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def mean: add / length;
  def sd: mean as $m | if length > 1 then (map((. - $m) * (. - $m)) | add / (length - 1) | sqrt) else 0 end;
  {rounds: length, protocol: $protocol,
   results: (map(.results) | transpose | map(
     (map(.times) | add) as $t
     | {command: .[0].command, mean: ($t | mean), stddev: ($t | sd), median: ($t | median),
        min: ($t | min), max: ($t | max), times: $t}))}' \
    --arg protocol "$protocol" "$d"/round-*.json >"$JSON"

# --- report --------------------------------------------------------------
echo
echo "Machine: $(nproc) CPUs, Linux $(uname -r), $(
    if [ -e /sys/fs/cgroup/cgroup.controllers ]; then echo cgroup v2; else echo cgroup v1; fi
), $(if $is_root; then echo root; else echo "uid $(id -u)"; fi); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Versions: $("$bw" --version) ($bw_from), $(bwrap --version), $(hyperfine --version)$(
    [ -n "$srt" ] && echo ", srt $("$srt" --version)")"
echo "Protocol: $protocol"
echo
jq -r '
  def ms: . * 1000;
  def dec($n): (. * $n | round) as $c | "\($c / $n | floor).\($c % $n | tostring | if length < ($n | tostring | length) - 1 then ("0" * (($n | tostring | length) - 1 - length)) + . else . end)";
  def f: if . == null then "—" elif . >= 100 then "\(. | round)" elif . >= 10 then dec(10) else dec(100) end;
  (.results | map({key: .command, value: .}) | from_entries) as $r
  | ($r["true"].median | ms) as $base
  | ($r["true"].min | ms) as $base_min
  | (($r["bwrap"].median | ms) - $base) as $bw_added
  | (($r["bwrap"].min | ms) - $base_min) as $bw_added_min
  | ["command", "median", "mean ± σ", "min", "added (median)", "added ÷ bwrap (median)", "added ÷ bwrap (min)"],
    (.results[] |
      (.median | ms) as $m | (.min | ms) as $min |
      [.command, "\($m | f) ms", "\(.mean | ms | f) ± \(.stddev | ms | f) ms", "\($min | f) ms",
       (if .command == "true" then "—" else "\($m - $base | f) ms" end),
       (if .command == "true" then "—" else "\(($m - $base) / $bw_added | f)×" end),
       (if .command == "true" then "—" else "\(($min - $base_min) / $bw_added_min | f)×" end)])
  | @tsv' "$JSON" | column -t -s $'\t'
echo

verdict() {
    jq -r --arg name "$1" '
      (.results | map({key: .command, value: .}) | from_entries) as $r
      | (($r[$name].median - $r["true"].median) / ($r["bwrap"].median - $r["true"].median)) as $x
      | "\($name): added time \($x * 100 | round / 100)× bubblewrap'"'"'s (medians); budget ≤ 2×: \(if $x <= 2 then "met" else "MISSED" end)"' "$JSON"
}
verdict "blastwall overlay"
verdict "blastwall ro"
if [ -n "${BASELINE:-}" ]; then
    echo "baseline: $BASELINE ($("$BASELINE" --version))"
fi
if [ -n "$srt_why" ]; then
    echo "srt: not measured: $srt_why"
else
    jq -r '(.results | map({key: .command, value: .}) | from_entries) as $r
      | "srt: added time \((($r["srt"].median - $r["true"].median) / ($r["bwrap"].median - $r["true"].median)) | round)× bubblewrap'"'"'s, \((($r["srt"].median - $r["true"].median) / ($r["blastwall overlay"].median - $r["true"].median)) * 10 | round / 10)× blastwall'"'"'s (medians)"' "$JSON"
fi
echo "JSON: $JSON"
