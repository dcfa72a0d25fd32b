#!/usr/bin/env bash
# Puts ONNX Runtime's shared library at $CARGO_TARGET_DIR/onnxruntime/
# libonnxruntime.so (default target/), for muon's onnxruntime backend, which
# loads it at run time (the ort crate's load-dynamic feature).
# Needs no venv: the library is taken out of the PyPI wheel for this platform,
# the one place a pinned, prebuilt build can be had from a package registry.
# Prints the library's absolute path (its only stdout line).
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.32.0
dir="${CARGO_TARGET_DIR:-target}/onnxruntime"
lib="$dir/libonnxruntime.so"
stamp="$dir/VERSION"

if [ ! -f "$lib" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$version" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --disable-pip-version-check \
        "onnxruntime==$version" --no-deps --only-binary=:all: -d "$tmp" >&2
    unzip -q -o "$tmp"/onnxruntime-*.whl 'onnxruntime/capi/libonnxruntime.so.*' -d "$tmp"
    mkdir -p "$dir"
    rm -f "$dir"/libonnxruntime.so*
    # Real file under the plain name (what muon is pointed at) ...
    cp "$tmp/onnxruntime/capi/libonnxruntime.so.$version" "$lib"
    # ... and its SONAME (libonnxruntime.so.1) beside it, for anything that
    # resolves the library by that name.
    soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    if [ -n "$soname" ] && [ "$soname" != libonnxruntime.so ]; then
        ln -s libonnxruntime.so "$dir/$soname"
    fi
    echo "$version" >"$stamp"
fi
echo "$(cd "$dir" && pwd)/libonnxruntime.so"
