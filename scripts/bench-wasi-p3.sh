#!/usr/bin/env bash
# WASI 0.3 against 0.2, side by side in one run: requests/s of a hello
# answered by a WASI 0.3 component (`fixture-spin-p3`, Spin SDK 7's
# `#[http_service]`), by WASI 0.2 ones (`fixture-spin-p2`, Spin SDK 3's
# `#[http_component]`; `http-hello`, plain wasi:http), by the handler world
# (`hello`), and by native hyper (`native-hello`), metering off, at 1, 16 and
# 64 connections, interleaved round by round. Build with the `dist` profile
# to measure what ships:
#   scripts/bench-wasi-p3.sh MUON_BIN NATIVE_BIN
# BENCH_SECONDS sets each run's length (default 5), BENCH_ROUNDS the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
usage="usage: scripts/bench-wasi-p3.sh MUON_BIN NATIVE_BIN"
muon_bin=$(realpath "${1:?$usage}")
native_bin=$(realpath "${2:?$usage}")

native=$(start native "$native_bin" 127.0.0.1:0)
muon=$(start_muon muon "$muon_bin" --metering false)
auth=(-H "authorization: Bearer $(cat "$work/muon/admin.key")")
functions=(hello http-hello fixture-spin-p2 fixture-spin-p3)
for fn in "${functions[@]}"; do
    curl -sf "${auth[@]}" -XPUT --data-binary @"$guest/${fn//-/_}.wasm" \
        "$muon/v1/functions/$fn?max_concurrency=1000&public=true" >/dev/null
    curl -sf "$muon/fn/default/$fn/" >/dev/null
done
wrk -t2 -c64 -d1s "$muon/fn/default/hello" >/dev/null
wrk -t2 -c64 -d1s "$native/" >/dev/null

echo "WASI 0.3 against 0.2 and native hyper: $(machine), metering off"
echo "muon: $muon_bin"
printf "%-6s %6s %12s" round conns native
for fn in "${functions[@]}"; do printf " %16s" "$fn"; done
printf " %10s %10s\n" "p3/p2" "p3/native"
for round in $(seq 1 "$rounds"); do
    for c in 1 16 64; do
        n=$(rps "$native/" "$c")
        printf "%-6s %6s %12s" "$round" "$c" "$n"
        declare -A got=()
        for fn in "${functions[@]}"; do
            got[$fn]=$(rps "$muon/fn/default/$fn/" "$c")
            printf " %16s" "${got[$fn]}"
        done
        printf " %10s %10s\n" "$(ratio "${got[fixture-spin-p3]}" "${got[fixture-spin-p2]}")" \
            "$(ratio "${got[fixture-spin-p3]}" "$n")"
        unset got
    done
done
