#!/usr/bin/env bash
# Training benchmark, side by side in one run on this machine: the digits
# MLP's train-step graph (examples/training) run by a muon job, every step a
# sandboxed call of functions/train-digits through wasi-nn
# (scripts/bench-train-muon.py, over HTTP to a fresh release server); the same
# graph on ONNX Runtime called directly from Rust (tests/src/bin/train-bench.rs);
# and the same MLP in numpy (scripts/bench-train-numpy.py, batches of 32);
# one ONNX Runtime thread throughout.
# TRAIN_BENCH_EPOCHS sets the epochs (default 100, about half a second for
# each side); TRAIN_BENCH_BATCH the rows a step on both sides (default 32:
# the smaller the batch, the more a step's fixed cost weighs);
# TRAIN_BENCH_HIDDEN the hidden layer's width (default 64: the graphs'
# hidden width is symbolic); TRAIN_BENCH_DEVICE=gpu runs the Rust side on CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
# quietly COMMAND...: runs a build step, showing its output only if it fails.
quietly() { "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "failed: $*" >&2; exit 1; }; }
quietly cargo build --release -p muon -p muon-tests --bin train-bench
quietly ./scripts/build-functions.sh
. scripts/bench-lib.sh
quietly ./scripts/onnxruntime.sh
python=$(./scripts/python-env.sh)

echo "machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), $(nproc) cores," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load average $(cut -d' ' -f1-3 /proc/loadavg)"
epochs="${TRAIN_BENCH_EPOCHS:-100}"
for round in $(seq 1 "$rounds"); do
    echo "round $round"
    url=$(start_muon "muon-$round" "$target/release/muon" --nn-intra-op-threads 1 --jobs-workers 1)
    "$python" scripts/bench-train-muon.py "$url" "$work/muon-$round/admin.key" "$guest/train_digits.wasm" "$epochs" "${TRAIN_BENCH_BATCH:-32}" "${TRAIN_BENCH_HIDDEN:-64}"
    kill "$(cat "$work/muon-$round.pid")"
    "$target/release/train-bench"
done
"$python" scripts/bench-train-numpy.py "$epochs"
rm -f "$log"
