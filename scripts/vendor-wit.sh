#!/usr/bin/env bash
# Refreshes wit/deps/wasi-nn from the wasmtime-wasi-nn crate on crates.io, so
# muon implements exactly the wasi:nn version wasmtime does.
# Usage: scripts/vendor-wit.sh [WASMTIME_VERSION]   (default: the pinned wasmtime)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-$(sed -n 's/^wasmtime = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/src"
touch "$scratch/src/lib.rs"
cat >"$scratch/Cargo.toml" <<TOML
[package]
name = "vendor-wit"
version = "0.0.0"
edition = "2021"
[dependencies]
wasmtime-wasi-nn = { version = "=$version", default-features = false }
TOML
cargo fetch --manifest-path "$scratch/Cargo.toml" --quiet
source="$(cargo metadata --manifest-path "$scratch/Cargo.toml" --format-version 1 \
    | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "wasmtime-wasi-nn"))')"
cp "$(dirname "$source")/wit/wasi-nn.wit" wit/deps/wasi-nn/wasi-nn.wit
echo "wit/deps/wasi-nn/wasi-nn.wit <- wasmtime-wasi-nn $version ($(head -1 wit/deps/wasi-nn/wasi-nn.wit))"
