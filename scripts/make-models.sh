#!/usr/bin/env bash
# Generates the models that are not committed (see scripts/make-models.py) into
# $CARGO_TARGET_DIR/models (default target/models). Pass --heavy to also make
# resnet50.onnx (~100 MB). Models already made by the same script are skipped.
# Prints the models directory's absolute path (its only stdout line); what the
# generator reports (sizes, timings) goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(./scripts/python-env.sh)
dir="${CARGO_TARGET_DIR:-target}/models"
mkdir -p "$dir"
"$python" scripts/make-models.py "$dir" "$@" >&2
echo "$(cd "$dir" && pwd)"
