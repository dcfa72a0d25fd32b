#!/usr/bin/env bash
# Batching benchmark (tests/src/bin/batch-bench.rs), side by side in one run:
# digits and the ResNet-50-sized model (with a batch dimension) through muon,
# dynamic batching off against on, at 1, 8, 32 and 64 clients: requests/s and
# latency p50/p99, and the mean rows per batch. Built and run by
# scripts/bench-nn.sh, which prints the machine first.
# BATCH_BENCH_SECONDS sets each cell's length (default 5); BATCH_BENCH_BACKEND
# the backend (onnxruntime, the default, or tract); BATCH_BENCH_DIGITS and
# BATCH_BENCH_RESNET the batching settings as batch_max,batch_wait_us
# (defaults 64,500 and 16,5000); BATCH_BENCH_MODELS which models (digits,resnet).
set -euo pipefail
exec "$(dirname "$0")/bench-nn.sh" batch-bench
