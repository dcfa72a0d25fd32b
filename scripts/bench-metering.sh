#!/usr/bin/env bash
# What metering costs, side by side in one run: requests/s of `hello` (GET)
# and `digits` (POST JSON, wasi-nn on the default backend) through one muon
# binary run three times: metering on with `ledger_sync = "interval"` (the
# default), metering on with `"always"`, and metering off; at 2, 16 and 64
# connections, interleaved round by round so drift hits all three alike.
# Prints each run and the ratios on/off for each mode.
#   scripts/bench-metering.sh [MUON_BIN]
# MUON_BIN defaults to this checkout's release build. BENCH_SECONDS sets each
# run's length (default 5), BENCH_ROUNDS the rounds (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
bin=$(realpath "${1:-$target/release/muon}")

interval=$(start_muon interval "$bin" --ledger-sync interval)
always=$(start_muon always "$bin" --ledger-sync always)
off=$(start_muon off "$bin" --metering false)
for name in interval always off; do
    url=${!name}
    setup "$name" "$url"
    check_digits "$url"
    wrk -t2 -c16 -d1s "$url/fn/default/hello" >/dev/null
done

echo "muon metering on (ledger_sync interval, always) against off: $(machine), SQLite ledger"
echo "binary: $bin"
printf "%-6s %-7s %6s %12s %12s %12s %15s %13s\n" \
    round fn conns interval-req/s always-req/s off-req/s interval/off always/off
for round in $(seq 1 "$rounds"); do
    for c in 2 16 64; do
        for fn in hello digits; do
            lua=""; [ "$fn" = digits ] && lua="$digits_lua"
            i=$(rps "$interval/fn/default/$fn" "$c" "$lua")
            a=$(rps "$always/fn/default/$fn" "$c" "$lua")
            o=$(rps "$off/fn/default/$fn" "$c" "$lua")
            printf "%-6s %-7s %6s %12s %12s %12s %15s %13s\n" \
                "$round" "$fn" "$c" "$i" "$a" "$o" "$(ratio "$i" "$o")" "$(ratio "$a" "$o")"
        done
    done
done
