#!/usr/bin/env bash
# Installs what is needed, builds muon and the example functions, then serves
# on embedded defaults with `hello` and the `digits` classifier (its model
# pushed) deployed. Ctrl-C stops the server.
#   MUON_LISTEN (default 127.0.0.1:8080), MUON_DATA_DIR (default ./muon-data)
set -euo pipefail
cd "$(dirname "$0")/.."
listen="${MUON_LISTEN:-127.0.0.1:8080}"
data_dir="${MUON_DATA_DIR:-./muon-data}"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
./scripts/build-functions.sh
cargo build --release -p muon -p muon-tests
# libonnxruntime from PyPI's onnxruntime wheel, beside the build, where muon finds it.
./scripts/onnxruntime.sh >/dev/null
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
export MUON_SERVER="$url" MUON_DATA_DIR="$data_dir"
"$muon" deploy hello "$target/wasm32-wasip2/guest/hello.wasm" --public
"$muon" models push digits examples/digits/digits.onnx
"$muon" deploy digits "$target/wasm32-wasip2/guest/digits.wasm" --models digits --public
# A handwritten 0 (the first image of scikit-learn's digits set).
pixels='[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0]'
# A few calls, so the dashboard has figures to show from the start.
for name in muon dashboard ui; do
    curl -fsS "$url/fn/default/hello?name=$name" >/dev/null
done
curl -fsS -d "{\"pixels\":$pixels}" "$url/fn/default/digits" >/dev/null
echo
echo "muon is serving at $url with the hello and digits functions. Try:"
echo "  curl '$url/fn/default/hello?name=muon'"
echo "  curl -s -d '{\"pixels\":$pixels}' $url/fn/default/digits"
echo
echo "The dashboard: $url/ui"
echo "  sign in with the admin key: $(cat "$data_dir/admin.key" 2>/dev/null || echo "(none in $data_dir/admin.key: muon admin reset-key)")"
echo
wait $server
