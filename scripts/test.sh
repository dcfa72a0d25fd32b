#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, builds the
# guest components and the host, then runs every test (unit and integration).
# Extra arguments go to the test runner (a filter, for example).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
./scripts/build-functions.sh
cargo build --release -p muon -p muon-tests
# Guests are tested through the host; as native crates they have nothing to run.
excludes=()
for dir in functions/*/; do
    excludes+=(--exclude "$(basename "$dir")")
done
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --release --workspace "${excludes[@]}" --no-fail-fast "$@"
else
    cargo test --release --workspace "${excludes[@]}" --no-fail-fast "$@"
fi
