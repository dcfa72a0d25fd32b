#!/usr/bin/env bash
# Dataset ingest, muon against pandas, side by side in one run: the same CSV
# (made by scripts/bench-datasets-gen.py: numeric and categorical columns,
# some missing values; BENCH_MB megabytes, default 100) cleaned, described,
# split 0.8/0.1/0.1 with a seed, z-scored with the train split's statistics,
# one-hot encoded and written to Parquet, by
#   - muon: `PUT /v1/datasets/bench` over HTTP (curl) to a fresh release
#     server each round; seconds are curl's, from the first byte sent to the
#     report; peak memory is the server's high-water mark (VmHWM), the whole
#     process, as pandas' is its process's max RSS;
#   - pandas: scripts/bench-datasets-pandas.py (read_csv, dropna, describe,
#     a seeded split, z-score, get_dummies, to_parquet).
# Each prints seconds, MB/s and peak memory (max RSS); rounds interleave
# (BENCH_ROUNDS, default 3). Target: muon at least as fast as pandas, with
# peak memory under twice the file size.
#   scripts/bench-datasets.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
megabytes="${BENCH_MB:-100}"
python=$(./scripts/python-env.sh scripts/requirements-datasets.txt datasets-py)
cargo build --release -q -p muon
dir="$target/bench-datasets"
mkdir -p "$dir"
csv="$dir/bench-${megabytes}mb.csv"
[ -s "$csv" ] || "$python" scripts/bench-datasets-gen.py "$csv" "$megabytes" >&2
query="label=label&categorical=color,city,label&missing=drop&normalize=zscore&split=0.8,0.1,0.1&seed=0"
size=$(stat -c %s "$csv")
echo "file: $csv ($((size / 1000000)) MB)"
# muon_over_http ROUND: one upload to a fresh server; prints the JSON line
# the pandas script prints.
muon_over_http() {
    local url pid after seconds
    url=$(start_muon "muon-$1" "$target/release/muon")
    pid=$(cat "$work/muon-$1.pid")
    seconds=$(curl -sf -o "$work/report-$1.json" -w '%{time_total}' -T "$csv" \
        -H "authorization: Bearer $(cat "$work/muon-$1/admin.key")" -H 'content-type: text/csv' \
        "$url/v1/datasets/bench?$query")
    after=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    kill "$pid"
    "$python" -c 'import sys; s, kb, size = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]); print(f"{{\"tool\": \"muon\", \"seconds\": {s}, \"mb_per_s\": {size / 1e6 / s}, \"peak_mb\": {kb * 1024 / 1e6}}}")' \
        "$seconds" "$after" "$size"
}

echo "$(machine | sed 's/, wrk on the same machine.*//'); muon over HTTP (loopback, curl)"
printf '%-8s %6s %10s %8s %10s %12s\n' tool round seconds MB/s peak_MB peak/file
for round in $(seq 1 "$rounds"); do
    for tool in muon pandas; do
        if [ "$tool" = muon ]; then
            line=$(muon_over_http "$round")
        else
            line=$("$python" scripts/bench-datasets-pandas.py "$csv" "$dir/pandas.parquet")
        fi
        "$python" - "$line" "$round" "$size" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"{r['tool']:<8} {sys.argv[2]:>6} {r['seconds']:>10.2f} {r['mb_per_s']:>8.1f} {r['peak_mb']:>10.0f} {r['peak_mb'] * 1e6 / float(sys.argv[3]):>12.2f}")
PY
    done
done
rm -f "$dir/pandas.parquet"
