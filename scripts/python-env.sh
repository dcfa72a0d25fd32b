#!/usr/bin/env bash
# Makes the Python virtual environment that the model scripts run in, at
# $CARGO_TARGET_DIR/py (default target/py), with the pinned packages of
# scripts/requirements-models.txt. A stamp holding the requirements' hash makes
# a second run instant; changing the file reinstalls.
#   scripts/python-env.sh [REQUIREMENTS NAME]
# makes another one, at $CARGO_TARGET_DIR/NAME, from REQUIREMENTS instead.
# Prints the venv's python path (its only stdout line).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
venv="$target/${2:-py}"
requirements="${1:-scripts/requirements-models.txt}"
stamp="$venv/.requirements.sha256"

want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$target"
    python3 -m venv "$venv"
    # Output goes to stderr: stdout is reserved for the path.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$requirements" >&2
    echo "$want" >"$stamp"
fi
python="$(cd "$venv/bin" && pwd)/python"
echo "$python"
