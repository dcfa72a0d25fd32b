#!/usr/bin/env bash
# Regression check, side by side in one run: requests/s of `hello` (GET) and
# `digits` (POST JSON, wasi-nn on the default backend) through two muon
# binaries, metering on, interleaved round by round so drift hits both alike.
#   scripts/bench-compare.sh BEFORE_BIN [AFTER_BIN]
# AFTER_BIN defaults to this checkout's release build. BENCH_SECONDS sets each
# run's length (default 5), BENCH_ROUNDS the rounds (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
before_bin=$(realpath "${1:?usage: scripts/bench-compare.sh BEFORE_BIN [AFTER_BIN]}")
target="${CARGO_TARGET_DIR:-target}"
after_bin=$(realpath "${2:-$target/release/muon}")
seconds="${BENCH_SECONDS:-5}"
rounds="${BENCH_ROUNDS:-3}"
if ! command -v wrk >/dev/null || ! command -v bc >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk bc >/dev/null
fi
guest="$target/wasm32-wasip2/guest"
work=$(mktemp -d)
cleanup() { for pid in "$work"/*.pid; do [ -e "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT

# start NAME BINARY: serves on a free port with its own data dir; echoes the URL.
start() {
    "$2" serve --listen 127.0.0.1:0 --data-dir "$work/$1" >"$work/$1.out" 2>"$work/$1.err" &
    echo $! >"$work/$1.pid"
    for _ in $(seq 1 200); do
        url=$(sed -n 's/.*listening on //p' "$work/$1.out")
        [ -n "$url" ] && { echo "$url"; return; }
        sleep 0.05
    done
    echo "$1 did not start" >&2; cat "$work/$1.err" >&2; exit 1
}
# setup NAME URL: deploys hello and digits (public) with the digits model.
setup() {
    local auth=(-H "authorization: Bearer $(cat "$work/$1/admin.key")")
    curl -sf "${auth[@]}" -XPUT --data-binary @"$guest/hello.wasm" "$2/v1/functions/hello?max_concurrency=1000&public=true" >/dev/null
    curl -sf "${auth[@]}" -XPUT --data-binary @examples/digits/digits.onnx "$2/v1/models/digits" >/dev/null
    curl -sf "${auth[@]}" -XPUT --data-binary @"$guest/digits.wasm" "$2/v1/functions/digits?max_concurrency=1000&public=true&models=digits" >/dev/null
}
pixels='[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0]'
cat >"$work/digits.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"pixels":$pixels}'
wrk.headers["content-type"] = "application/json"
EOF
rps() { # rps URL CONNECTIONS [LUA]
    local threads=$(( $2 < 2 ? 1 : 2 )) script=()
    [ -n "${3:-}" ] && script=(-s "$3")
    wrk -t"$threads" -c"$2" -d"${seconds}s" "${script[@]}" "$1" | awk '/Requests\/sec/ {printf "%.0f", $2}'
}

before=$(start before "$before_bin")
after=$(start after "$after_bin")
setup before "$before"
setup after "$after"
for url in "$before" "$after"; do
    answer=$(curl -sf -d "{\"pixels\":$pixels}" "$url/fn/default/digits")
    echo "$answer" | grep -q '"digit":0' || { echo "digits answered $answer at $url" >&2; exit 1; }
    wrk -t2 -c16 -d1s "$url/fn/default/hello" >/dev/null
done

echo "muon before/after: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), metering on, wrk on the same machine, ${seconds}s per run"
echo "before: $before_bin"
echo "after:  $after_bin"
printf "%-6s %-7s %6s %12s %12s %8s\n" round fn conns before-req/s after-req/s after/before
for round in $(seq 1 "$rounds"); do
    for c in 2 16 64; do
        for fn in hello digits; do
            lua=""; [ "$fn" = digits ] && lua="$work/digits.lua"
            b=$(rps "$before/fn/default/$fn" "$c" "$lua")
            a=$(rps "$after/fn/default/$fn" "$c" "$lua")
            printf "%-6s %-7s %6s %12s %12s %8.2f\n" "$round" "$fn" "$c" "$b" "$a" "$(echo "$a / $b" | bc -l)"
        done
    done
done
