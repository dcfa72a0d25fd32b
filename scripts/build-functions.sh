#!/usr/bin/env bash
# Builds every component under functions/ for wasm32-wasip2: the workspace's
# in one cargo run, then the Spin SDK fixtures, each with its own lock file.
# Output: target/wasm32-wasip2/guest/<crate_name>.wasm
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
packages=()
standalone=()
for dir in functions/*/; do
    name="$(basename "$dir")"
    if grep -q '^\[workspace\]' "$dir/Cargo.toml"; then
        standalone+=("$name")
    else
        packages+=(-p "$name")
    fi
done
cargo build --profile guest --target wasm32-wasip2 "${packages[@]}"
for name in "${standalone[@]}"; do
    cargo build --release --locked --target wasm32-wasip2 \
        --manifest-path "functions/$name/Cargo.toml" --target-dir target/standalone-guests
    cp "target/standalone-guests/wasm32-wasip2/release/${name//-/_}.wasm" target/wasm32-wasip2/guest/
done
