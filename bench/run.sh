#!/usr/bin/env bash
# Runs the decide and audit benches and prints each bench's median with its
# 95 % confidence interval, read from criterion's estimates.
#
#   bench/run.sh                      # every bench, 1 s warm-up, 3 s measurement
#   bench/run.sh decide/              # only the benches whose id contains `decide/`
#   BENCHES=audit bench/run.sh        # only the audit bench (events/s in the last column)
#   WARM_UP=3 MEASURE=10 bench/run.sh # longer runs on a quiet machine
#
# Honours CARGO_TARGET_DIR. Needs jq. Later: the side-by-side peer
# benchmarks of DESIGN.md §8 (bubblewrap, srt, direct HTTP) join here.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
export CRITERION_HOME="$target/criterion"
command -v jq >/dev/null || { echo "run.sh: jq is needed to read criterion's estimates" >&2; exit 2; }

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

cd "$root"
for bench in ${BENCHES:-decide audit}; do
    cargo bench -p blastwall-bench --bench "$bench" -- \
        --warm-up-time "${WARM_UP:-1}" --measurement-time "${MEASURE:-3}" "$@" | tee -a "$log"
done

# Nanoseconds to a readable figure.
fmt='def t: if . >= 1e6 then "\(. / 1e6 * 1000 | round / 1000) ms"
          elif . >= 1e3 then "\(. / 1e3 * 1000 | round / 1000) µs"
          else "\(. * 10 | round / 10) ns" end;'

echo
printf '%-45s %12s   %-32s %s\n' bench median "95% CI of the median" "per second (audit: events/s)"
# criterion prints `id  time: [...]`, or the id on a line of its own when it
# is long and `time:` on the next.
awk '/^[^[:space:]]/ { last = $1 } /^[^[:space:]]*[[:space:]]+time:/ && !/%/ { print ($1 == "time:" ? last : $1) }' "$log" | while read -r id; do
    est="$CRITERION_HOME/$id/new/estimates.json"
    [ -f "$est" ] || { printf '%-45s %12s\n' "$id" "(no estimates)"; continue; }
    jq -r --arg id "$id" "$fmt"'
        .median as $m
        | "\($id)\t\($m.point_estimate | t)\t[\($m.confidence_interval.lower_bound | t), \($m.confidence_interval.upper_bound | t)]\t\(1e9 / $m.point_estimate | round)"' "$est" |
        awk -F'\t' '{ printf "%-45s %12s   %-32s %s\n", $1, $2, $3, $4 }'
done
