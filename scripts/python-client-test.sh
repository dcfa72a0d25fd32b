#!/usr/bin/env bash
# Tests the Python client (clients/python) against a live muon: makes the venv
# target/py-client from clients/python/requirements-test.txt (pinned; see
# scripts/python-env.sh), installs the client into it as a user would
# (`pip install ./clients/python`), and runs its pytest suite, which starts
# the server itself.
#   scripts/python-client-test.sh [PYTEST ARGS...]
# Needs the release binary and the guests: MUON_BIN (default
# target/release/muon) and MUON_GUESTS (default target/wasm32-wasip2/guest),
# built by `cargo build --release` and scripts/build-functions.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(scripts/python-env.sh clients/python/requirements-test.txt py-client)
# Reinstalled every run: the client's sources change more often than its pins.
"$python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall ./clients/python >&2
rm -rf clients/python/build
export MUON_BIN="${MUON_BIN:-$PWD/${CARGO_TARGET_DIR:-target}/release/muon}"
export MUON_GUESTS="${MUON_GUESTS:-$PWD/${CARGO_TARGET_DIR:-target}/wasm32-wasip2/guest}"
cd clients/python
exec "$python" -m pytest -q "$@"
