#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, builds the
# guest components and the host, then runs every test (unit and integration).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
./scripts/build-functions.sh
cargo build --release -p muon
cargo test --release --workspace --exclude muon-sdk --exclude muon-sdk-macro $(for d in functions/*/; do printf -- '--exclude %s ' "$(basename "$d")"; done) "$@"
