#!/usr/bin/env bash
# Builds every component under functions/ for wasm32-wasip2, in one cargo run.
# Output: target/wasm32-wasip2/guest/<crate_name>.wasm
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
packages=()
for dir in functions/*/; do
    packages+=(-p "$(basename "$dir")")
done
cargo build --profile guest --target wasm32-wasip2 "${packages[@]}"
