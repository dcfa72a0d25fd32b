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
. scripts/bench-lib.sh
after_bin=$(realpath "${2:-$target/release/muon}")

before=$(start_muon before "$before_bin")
after=$(start_muon after "$after_bin")
setup before "$before"
setup after "$after"
for url in "$before" "$after"; do
    check_digits "$url"
    wrk -t2 -c16 -d1s "$url/fn/default/hello" >/dev/null
done

echo "muon before/after: $(machine), metering on"
echo "before: $before_bin"
echo "after:  $after_bin"
printf "%-6s %-7s %6s %12s %12s %8s\n" round fn conns before-req/s after-req/s after/before
for round in $(seq 1 "$rounds"); do
    for c in 2 16 64; do
        for fn in hello digits; do
            lua=""; [ "$fn" = digits ] && lua="$digits_lua"
            b=$(rps "$before/fn/default/$fn" "$c" "$lua")
            a=$(rps "$after/fn/default/$fn" "$c" "$lua")
            printf "%-6s %-7s %6s %12s %12s %8s\n" "$round" "$fn" "$c" "$b" "$a" "$(ratio "$a" "$b")"
        done
    done
done
