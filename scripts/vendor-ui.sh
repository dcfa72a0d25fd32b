#!/usr/bin/env bash
# Refreshes the dashboard's chart library, uPlot, in host/ui/vendor/uplot from
# the npm registry: its minified script and stylesheet, its license, and the
# version and SHA-256 of the package they came from (VERSION). The files are
# committed and embedded in muon; building muon needs no Node toolchain, only
# this script does (npm).
# Usage: scripts/vendor-ui.sh [VERSION]   (default: the version in VERSION)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=host/ui/vendor/uplot
version="${1:-$(sed -n 's/^uplot@\([0-9.]*\).*/\1/p' "$dir/VERSION")}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
tarball=$(cd "$scratch" && npm pack --silent "uplot@$version")
tar -xzf "$scratch/$tarball" -C "$scratch"
cp "$scratch/package/dist/uPlot.iife.min.js" "$dir/uPlot.iife.min.js"
cp "$scratch/package/dist/uPlot.min.css" "$dir/uPlot.min.css"
cp "$scratch/package/LICENSE" "$dir/LICENSE"
echo "uplot@$version sha256:$(sha256sum "$scratch/$tarball" | cut -d' ' -f1)" >"$dir/VERSION"
echo "$dir <- $(cat "$dir/VERSION")"
