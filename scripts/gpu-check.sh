#!/usr/bin/env bash
# Checks the CUDA path on a machine with an NVIDIA GPU, CUDA's libraries and a
# CUDA-enabled ONNX Runtime (PyPI's onnxruntime-gpu), and times it against CPU.
# Usage: scripts/gpu-check.sh MUON_BINARY LIBONNXRUNTIME GUEST_DIR MODELS_DIR
#   GUEST_DIR holds digits.wasm and fixture_nn_probe.wasm (scripts/build-functions.sh);
#   MODELS_DIR holds resnet50.onnx (scripts/make-models.py MODELS_DIR --heavy).
# Needs python3 with numpy and requests.
set -euo pipefail
cd "$(dirname "$0")/.."
muon=$1 library=$2 guest=$3 models=$4
work=$(mktemp -d)
trap '[ -e "$work/pid" ] && kill "$(cat "$work/pid")" 2>/dev/null; rm -rf "$work"' EXIT
MUON_ORT_DYLIB="$library" "$muon" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
    --nn-intra-op-threads 1 >"$work/out" 2>"$work/err" &
echo $! >"$work/pid"
for _ in $(seq 1 100); do
    grep -q "muon listening on" "$work/out" && break
    sleep 0.1
done
url=$(sed -n 's/^muon listening on //p' "$work/out")
[ -n "$url" ] || { cat "$work/err"; exit 1; }
echo "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); $(nproc) CPUs"
python3 scripts/gpu-check.py "$url" "$(cat "$work/data/admin.key")" "$guest" "$models" || { tail -20 "$work/err"; exit 1; }
grep -E "ONNX Runtime|model loaded|GPU" "$work/err" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-200 | tail -8
