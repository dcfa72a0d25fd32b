#!/usr/bin/env bash
# Tests the dashboard (/ui) in a real browser: Debian's headless Chromium,
# driven by Playwright for Python (pinned in tests/browser/requirements.txt,
# in the venv target/py-browser; see scripts/python-env.sh), against a live
# muon started here on a free loopback port with a fresh data directory and
# stopped by its PID at the end. Screenshots of every page go to
# target/ui-screenshots/, with the figures measured (figures.json).
#   scripts/browser-test.sh [PYTEST ARGS...]
# Installs Chromium where /usr/bin/chromium is missing. Builds nothing: it
# needs the release binary and the guests, MUON_BIN (default
# target/release/muon) and MUON_GUESTS (default target/wasm32-wasip2/guest),
# built by `cargo build --release` and scripts/build-functions.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >&2
fi
python=$(scripts/python-env.sh tests/browser/requirements.txt py-browser)
target="${CARGO_TARGET_DIR:-target}"
muon="${MUON_BIN:-$PWD/$target/release/muon}"
export MUON_GUESTS="${MUON_GUESTS:-$PWD/$target/wasm32-wasip2/guest}"
[ -x "$muon" ] || { echo "$muon is missing: build muon (cargo build --release -p muon)" >&2; exit 1; }

data_dir=$(mktemp -d /tmp/muon-browser.XXXXXX)
log="$data_dir/server.log"
# 1-second statistics windows, so a chart gains points within seconds.
"$muon" serve --listen 127.0.0.1:0 --data-dir "$data_dir/data" --monitor-window-ms 1000 >"$log" 2>&1 &
server=$!
stop() {
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$data_dir"
}
trap stop EXIT
for _ in $(seq 1 200); do
    grep -q "muon listening on" "$log" && break
    kill -0 "$server" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
MUON_URL=$(sed -n 's/^muon listening on //p' "$log")
[ -n "$MUON_URL" ] || { echo "muon did not start within 20 s" >&2; cat "$log" >&2; exit 1; }
export MUON_URL MUON_DATA_DIR="$data_dir/data"
status=0
"$python" -m pytest -q -p no:cacheprovider tests/browser "$@" || status=$?
[ "$status" = 0 ] || tail -50 "$log" >&2
exit "$status"
