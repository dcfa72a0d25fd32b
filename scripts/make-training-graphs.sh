#!/usr/bin/env bash
# Writes the digits MLP's training graphs into examples/training/ and checks
# them (scripts/make-training-graphs.py; --check-only checks the committed
# ones without writing), in the model scripts' pinned venv.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(./scripts/python-env.sh)
"$python" scripts/make-training-graphs.py "$@"
