#!/usr/bin/env bash
# blastwall's proxy side by side with direct requests and peer proxies, in
# one run (DESIGN.md §8; bench/README.md, "Proxy"): builds proxy-bench,
# installs the peers at run time (nothing of theirs is vendored), and prints
# the tables. Loopback (127.0.0.1) only.
#
#   bench/proxy.sh                          # 3 rounds, 1 s warm-up + 5 s per target
#   ROUNDS=5 DURATION=10 bench/proxy.sh     # longer, on a quieter machine
#   bench/proxy.sh --only get,https         # extra arguments go to `proxy-bench run`
#   HTTPJAIL=skip bench/proxy.sh            # do not try to build httpjail
#
# Installs: wrk and tinyproxy from Debian (apt-get, as root), srt
# (@anthropic-ai/sandbox-runtime) from npm into a temporary directory, and
# tries `cargo install httpjail` for at most HTTPJAIL_TIMEOUT seconds (300).
# httpjail's v8 dependency downloads a prebuilt V8 from outside the package
# registries in its build script, so where only the registries are reachable
# it does not build, and tinyproxy is the plain forwarding peer instead.
#
# Honours CARGO_TARGET_DIR. Every round's figures go to
# $CARGO_TARGET_DIR/proxy-bench.json.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$(mktemp -d -t proxy-bench-peers.XXXXXX)"
trap 'rm -rf "$work"' EXIT

say() { echo "proxy.sh: $*" >&2; }

# Debian: the wrk cross-check and tinyproxy.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v tinyproxy >/dev/null || missing+=(tinyproxy)
if ((${#missing[@]})); then
    say "installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# srt, from npm, into the temporary directory.
say "installing @anthropic-ai/sandbox-runtime from npm"
npm install --silent --no-audit --no-fund --prefix "$work/srt" @anthropic-ai/sandbox-runtime >&2
srt="$work/srt/node_modules/@anthropic-ai/sandbox-runtime"
say "srt $(node -p "require('$srt/package.json').version")"

# httpjail, if it builds in time.
peer=(--tinyproxy "$(command -v tinyproxy)")
if [[ "${HTTPJAIL:-try}" != skip ]]; then
    if command -v httpjail >/dev/null; then
        peer=(--httpjail "$(command -v httpjail)")
    else
        say "trying cargo install httpjail (at most ${HTTPJAIL_TIMEOUT:-300} s)"
        # Its own target directory, kept, so a second try is quick.
        if CARGO_TARGET_DIR="$target/httpjail-build" timeout "${HTTPJAIL_TIMEOUT:-300}" \
            cargo install --quiet --locked --root "$work/httpjail" httpjail >"$work/httpjail.log" 2>&1; then
            peer=(--httpjail "$work/httpjail/bin/httpjail")
        else
            say "httpjail did not build; tinyproxy is the plain forwarding peer. Why:"
            grep -E "panicked|^error|static lib URL" "$work/httpjail.log" | head -n 5 >&2 ||
                say "(timed out after ${HTTPJAIL_TIMEOUT:-300} s)"
        fi
    fi
fi

cd "$root"
cargo build --release -p blastwall-bench --bin proxy-bench >&2
"$target/release/proxy-bench" run \
    --rounds "${ROUNDS:-3}" --duration "${DURATION:-5}" --warmup "${WARM_UP:-1}" \
    --srt "$srt" --wrk "$(command -v wrk)" "${peer[@]}" \
    --json "$target/proxy-bench.json" "$@"
