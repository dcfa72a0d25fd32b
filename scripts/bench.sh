#!/usr/bin/env bash
# Benchmark, side by side in one run on this machine:
#  (a) requests/s of `hello` through muon (handler world and wasi:http) against
#      the same handler written natively on hyper, at 1, 16 and 64 connections;
#  (b) per-request instantiation time p50/p99 (from muon's /metrics);
#  (c) deploy-to-first-response time, cold (compile) and warm (cached).
#  (d) requests/s of `hello` with metering and the ledger on against the same
#      host with them off (--metering false), at 64 connections.
# Load comes from wrk on the same machine. BENCH_SECONDS sets each run's length.
# muon and the native baseline are both built with BENCH_PROFILE (default
# `dist`: fat LTO, one codegen unit; the first build takes about 20 minutes).
# Functions are deployed public=true, so requests carry no API key.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-functions.sh >/dev/null 2>&1
profile="${BENCH_PROFILE:-dist}"
cargo build --profile "$profile" -p muon -p muon-tests --bin muon --bin native-hello >/dev/null 2>&1
. scripts/bench-lib.sh
now_ms() { date +%s%3N; }

native=$(start native "$target/$profile/native-hello" 127.0.0.1:0)
# The first server meters nothing, so (a)-(c) measure the host alone; (d)
# compares it with a metering server.
muon_url=$(start muon "$target/$profile/muon" serve --listen 127.0.0.1:0 --data-dir "$work/data" --metering false)
metered_url=$(start metered "$target/$profile/muon" serve --listen 127.0.0.1:0 --data-dir "$work/metered")
auth=(-H "authorization: Bearer $(cat "$work/data/admin.key")")
metered_auth=(-H "authorization: Bearer $(cat "$work/metered/admin.key")")

# (c) cold: the first deploy compiles; warm: the same bytes again hit the cache.
t0=$(now_ms)
curl -sf "${auth[@]}" -XPUT --data-binary @$guest/hello.wasm "$muon_url/v1/functions/hello?max_concurrency=1000&public=true" >/dev/null
curl -sf "$muon_url/fn/default/hello" >/dev/null
t1=$(now_ms)
curl -sf "${auth[@]}" -XPUT --data-binary @$guest/hello.wasm "$muon_url/v1/functions/hello-warm?public=true" >/dev/null
curl -sf "$muon_url/fn/default/hello-warm" >/dev/null
t2=$(now_ms)
curl -sf "${auth[@]}" -XPUT --data-binary @$guest/http_hello.wasm "$muon_url/v1/functions/http-hello?max_concurrency=1000&public=true" >/dev/null
curl -sf "${metered_auth[@]}" -XPUT --data-binary @$guest/hello.wasm "$metered_url/v1/functions/hello?max_concurrency=1000&public=true" >/dev/null

# Warm up, then measure.
wrk -t2 -c64 -d2s "$muon_url/fn/default/hello" >/dev/null
wrk -t2 -c64 -d2s "$native/" >/dev/null
echo "muon benchmark ($profile build): $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), wrk on the same machine, ${seconds}s per run"
echo
printf "%-12s %14s %14s %8s %16s %8s\n" connections native-hyper muon-handler ratio muon-wasi-http ratio
for c in 1 16 64; do
    n=$(rps "$native/" "$c")
    h=$(rps "$muon_url/fn/default/hello" "$c")
    w=$(rps "$muon_url/fn/default/http-hello" "$c")
    printf "%-12s %14s %14s %8.2f %16s %8.2f\n" "$c" "$n" "$h" "$(echo "$h / $n" | bc -l)" "$w" "$(echo "$w / $n" | bc -l)"
done
echo
metrics=$(curl -sf "${auth[@]}" "$muon_url/metrics")
quantile() { echo "$metrics" | awk -v q="$1" -F'[{}" ]+' '$1=="muon_instantiate_seconds" && $3==q {printf "%.1f", $4*1e6}'; }
echo "instantiate (fresh instance per request): p50 $(quantile 0.5) µs, p99 $(quantile 0.99) µs"
echo "deploy to first response: cold (compile) $((t1 - t0)) ms, warm (cached artifact) $((t2 - t1)) ms"

# (d) metering on vs off, interleaved so drift hits both alike. Besides
# requests/s (closed loop: wrk waits for each response, so added latency costs
# throughput even on an idle CPU), the server's own CPU time per request.
wrk -t2 -c64 -d2s "$metered_url/fn/default/hello" >/dev/null
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.0f", ($14 + $15) * 1000000 / hz}' "/proc/$(cat "$work/$1.pid")/stat"; }
measure() { # measure SERVER URL: "requests/s CPU-µs-per-request"
    local before after out
    before=$(cpu_us "$1")
    out=$(wrk -t2 -c64 -d"${seconds}s" "$2")
    after=$(cpu_us "$1")
    echo "$out" | awk -v cpu=$((after - before)) '/requests in/ {n=$1} /Requests\/sec/ {printf "%.0f %.1f", $2, cpu / n}'
}
echo
printf "%-6s %14s %14s %8s %18s %18s %8s\n" run off-req/s on-req/s ratio off-cpu-µs/req on-cpu-µs/req ratio
for run in 1 2 3; do
    read -r off off_cpu <<<"$(measure muon "$muon_url/fn/default/hello")"
    read -r on on_cpu <<<"$(measure metered "$metered_url/fn/default/hello")"
    printf "%-6s %14s %14s %8.2f %18s %18s %8.2f\n" "$run" "$off" "$on" "$(echo "$on / $off" | bc -l)" \
        "$off_cpu" "$on_cpu" "$(echo "$off_cpu / $on_cpu" | bc -l)"
done
ledger=$(curl -sf "${metered_auth[@]}" "$metered_url/metrics")
batch=$(echo "$ledger" | awk -F'[{}" ]+' '$1=="muon_ledger_batch_size" && $3=="0.5" {printf "%.0f", $4}')
write=$(echo "$ledger" | awk -F'[{}" ]+' '$1=="muon_ledger_write_seconds" && $3=="0.5" {printf "%.0f", $4*1e6}')
echo "ledger (SQLite, default ledger_sync): median batch $batch records, median write+sync $write µs"
