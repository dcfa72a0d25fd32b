#!/usr/bin/env bash
# Host overhead before and after a change, side by side in one run:
# requests/s of `hello` through the handler world and through wasi:http
# (`http-hello`) on two muon binaries, metering off, against the same handler
# written natively on hyper, at 1, 16 and 64 connections, interleaved round by
# round. Build the binaries with the `dist` profile to compare what ships:
#   scripts/bench-native.sh BEFORE_BIN AFTER_BIN NATIVE_BIN
# (NATIVE_BIN: `cargo build --profile dist -p muon-tests --bin native-hello`.)
# BENCH_SECONDS sets each run's length (default 5), BENCH_ROUNDS the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
usage="usage: scripts/bench-native.sh BEFORE_BIN AFTER_BIN NATIVE_BIN"
before_bin=$(realpath "${1:?$usage}")
after_bin=$(realpath "${2:?$usage}")
native_bin=$(realpath "${3:?$usage}")

native=$(start native "$native_bin" 127.0.0.1:0)
before=$(start_muon before "$before_bin" --metering false)
after=$(start_muon after "$after_bin" --metering false)
for name in before after; do
    url=${!name}
    auth=(-H "authorization: Bearer $(cat "$work/$name/admin.key")")
    for fn in hello http_hello; do
        curl -sf "${auth[@]}" -XPUT --data-binary @"$guest/$fn.wasm" \
            "$url/v1/functions/${fn/_/-}?max_concurrency=1000&public=true" >/dev/null
    done
    wrk -t2 -c64 -d1s "$url/fn/default/hello" >/dev/null
done
wrk -t2 -c64 -d1s "$native/" >/dev/null

echo "muon before/after against native hyper: $(machine), metering off"
echo "before: $before_bin"
echo "after:  $after_bin"
printf "%-6s %-11s %6s %12s %12s %12s %15s %14s\n" \
    round fn conns native-req/s before-req/s after-req/s before/native after/native
for round in $(seq 1 "$rounds"); do
    for c in 1 16 64; do
        for fn in hello http-hello; do
            n=$(rps "$native/" "$c")
            b=$(rps "$before/fn/default/$fn" "$c")
            a=$(rps "$after/fn/default/$fn" "$c")
            printf "%-6s %-11s %6s %12s %12s %12s %15s %14s\n" \
                "$round" "$fn" "$c" "$n" "$b" "$a" "$(ratio "$b" "$n")" "$(ratio "$a" "$n")"
        done
    done
done
