#!/usr/bin/env bash
# Inference benchmark (tests/src/bin/nn-bench.rs), side by side in one run on
# this machine, for tract and ONNX Runtime on digits ([1, 64]) and ResNet-50
# ([1, 3, 224, 224]):
#  (a) latency with 1 client: muon end to end (HTTP -> guest -> wasi-nn ->
#      HTTP) against the same backend called directly from Rust;
#  (b) requests/s with 1, 2 and 8 clients through muon against 1, 2 and 8
#      threads calling one shared loaded model directly.
# muon runs with metering on and --nn-intra-op-threads 1; inference threads and
# sessions per model default to the CPU count, and the direct side matches.
# NN_BENCH_SECONDS sets each measured cell's length (default 5).
# `bench-nn.sh BIN` builds the same and runs tests/src/bin/BIN instead
# (scripts/bench-batch.sh runs batch-bench this way).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# quietly COMMAND...: runs a build step, showing its output only if it fails.
quietly() { "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "failed: $*" >&2; exit 1; }; }
quietly ./scripts/build-functions.sh
quietly cargo build --release -p muon -p muon-tests
quietly ./scripts/onnxruntime.sh
quietly ./scripts/make-models.sh --heavy

echo "machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), $(nproc) cores," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$target/release/${1:-nn-bench}"
