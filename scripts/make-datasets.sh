#!/usr/bin/env bash
# Writes examples/datasets/ (wine and digits as CSV and Parquet, the dirty CSV
# and its expected report) with scripts/make-datasets.py, in the Python
# environment of scripts/requirements-datasets.txt.
#   scripts/make-datasets.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(./scripts/python-env.sh scripts/requirements-datasets.txt datasets-py)
"$python" scripts/make-datasets.py "${1:-examples/datasets}"
