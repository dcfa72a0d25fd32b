#!/usr/bin/env bash
# What operations cost, side by side in one run: requests/s of `hello` (GET)
# through one muon binary run twice, with the monitor on (live statistics,
# detectors, guarded rollouts: the default) and off (--monitor-enabled
# false), both metering into the ledger as by default, at 2, 16 and 64
# connections, interleaved round by round so drift hits both alike. Then the
# memory the statistics hold for 1,000 functions (tests/src/bin/stats-memory.rs).
#   scripts/bench-monitor.sh [MUON_BIN]
# MUON_BIN defaults to this checkout's release build. BENCH_SECONDS sets each
# run's length (default 5), BENCH_ROUNDS the rounds (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
cargo build --release -p muon -p muon-tests --bin muon --bin stats-memory >/dev/null 2>&1
bin=$(realpath "${1:-$target/release/muon}")

on=$(start_muon on "$bin")
off=$(start_muon off "$bin" --monitor-enabled false)
for name in on off; do
    url=${!name}
    setup "$name" "$url"
    wrk -t2 -c16 -d1s "$url/fn/default/hello" >/dev/null
done

echo "muon monitor on against off: $(machine), metering on (SQLite ledger)"
echo "binary: $bin"
printf "%-6s %6s %12s %12s %8s\n" round conns on-req/s off-req/s on/off
for round in $(seq 1 "$rounds"); do
    for c in 2 16 64; do
        a=$(rps "$on/fn/default/hello" "$c")
        b=$(rps "$off/fn/default/hello" "$c")
        printf "%-6s %6s %12s %12s %8s\n" "$round" "$c" "$a" "$b" "$(ratio "$a" "$b")"
    done
done
echo
"$target/release/stats-memory" 60 100
