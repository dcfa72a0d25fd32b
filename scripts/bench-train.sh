#!/usr/bin/env bash
# Training benchmark, baselines side by side in one run on this machine: the
# digits MLP's train-step graph (examples/training) on ONNX Runtime called
# directly from Rust (tests/src/bin/train-bench.rs), and the same MLP in numpy
# (scripts/bench-train-numpy.py), both with batches of 32 and one thread.
# TRAIN_BENCH_EPOCHS sets the epochs (default 100, about half a second for
# each side); TRAIN_BENCH_DEVICE=gpu runs the Rust side on CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# quietly COMMAND...: runs a build step, showing its output only if it fails.
quietly() { "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "failed: $*" >&2; exit 1; }; }
quietly cargo build --release -p muon-tests --bin train-bench
quietly ./scripts/onnxruntime.sh
python=$(./scripts/python-env.sh)

echo "machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), $(nproc) cores," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$target/release/train-bench"
"$python" scripts/bench-train-numpy.py "${TRAIN_BENCH_EPOCHS:-100}"
