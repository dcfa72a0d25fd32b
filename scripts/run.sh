#!/usr/bin/env bash
# Installs what is needed, builds muon and the example functions, then serves
# on embedded defaults with `hello` deployed. Ctrl-C stops the server.
#   MUON_LISTEN (default 127.0.0.1:8080), MUON_DATA_DIR (default ./muon-data)
set -euo pipefail
cd "$(dirname "$0")/.."
listen="${MUON_LISTEN:-127.0.0.1:8080}"
data_dir="${MUON_DATA_DIR:-./muon-data}"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
./scripts/build-functions.sh
cargo build --release -p muon -p muon-tests
target="${CARGO_TARGET_DIR:-target}"
muon="$target/release/muon"

log=$(mktemp)
"$muon" serve --listen "$listen" --data-dir "$data_dir" >"$log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT INT TERM
for _ in $(seq 1 100); do
    grep -q "muon listening on" "$log" && break
    kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
url=$(sed -n 's/^muon listening on //p' "$log")
# Public, so the curl line below works without an API key.
MUON_SERVER="$url" MUON_DATA_DIR="$data_dir" "$muon" deploy hello "$target/wasm32-wasip2/guest/hello.wasm" --public
echo
echo "muon is serving at $url with the hello function. Try:"
echo "  curl '$url/fn/default/hello?name=muon'"
echo
wait $server
