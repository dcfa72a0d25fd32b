#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, builds the
# guest components and the host, then runs every test (unit and integration).
# Extra arguments go to the test runner (a filter, for example).
set -euo pipefail
cd "$(dirname "$0")/.."
# Habits first, so a format or lint error fails in seconds, not after the build.
for component in rustfmt clippy; do
    rustup component list --installed | grep -q "^$component" || rustup component add "$component"
done
cargo fmt --all --check
# The Spin SDK fixtures are not workspace members (each has its own lock file).
for manifest in functions/fixture-spin-*/Cargo.toml; do
    cargo fmt --check --manifest-path "$manifest"
done
# One clippy run covers the guest crates too: they are cdylibs for
# wasm32-wasip2, but nothing in them is specific to that target, and a check
# (unlike a build) never links, so clippy on the host target sees all their
# code. `--release` shares the build scripts and proc macros of the release
# build below, instead of building them again in a debug profile. Measured on
# 2 cores: nothing changed, 1 s; after an edit to the host, the tests and the
# SDK, 12-36 s; from cold (CI), about 415 CPU-seconds (3.5 minutes).
cargo clippy --release --workspace --all-targets -- -D warnings
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
./scripts/build-functions.sh
cargo build --release -p muon -p muon-tests
# ONNX Runtime (from PyPI's wheel) for the onnxruntime backend, and the models
# that tests generate rather than commit (a Python venv under target/py).
./scripts/onnxruntime.sh >/dev/null
./scripts/make-models.sh >/dev/null
# The committed training graphs must be what their script makes, still match
# numpy's gradients, and still train the digits MLP past 0.95 (about 2 s).
./scripts/make-training-graphs.sh --check-only >/dev/null
# pandas and numpy, which the dataset tests check muon's statistics against.
./scripts/python-env.sh scripts/requirements-datasets.txt datasets-py >/dev/null
# A throwaway PostgreSQL server for the tests that run on both databases.
pg_dir=$(mktemp -d /tmp/muon-test-pg.XXXXXX)
MUON_TEST_POSTGRES_URL=$(./scripts/postgres.sh "$pg_dir")
export MUON_TEST_POSTGRES_URL
stop_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
    else
        "$bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$pg_dir"
}
trap stop_postgres EXIT
# Components are tested through the host; as native cdylibs they have nothing
# to run. Plain library crates under functions/ (shared parsers) keep their tests.
excludes=()
for dir in functions/*/; do
    if grep -q 'crate-type = \["cdylib"\]' "$dir/Cargo.toml"; then
        excludes+=(--exclude "$(basename "$dir")")
    fi
done
status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --release --workspace "${excludes[@]}" --no-fail-fast "$@" || status=$?
else
    cargo test --release --workspace "${excludes[@]}" --no-fail-fast "$@" || status=$?
fi
# The Python client against a live server (its own venv, pinned packages).
./scripts/python-client-test.sh || status=$?
# The dashboard in a real browser (headless Chromium, installed where missing).
./scripts/browser-test.sh || status=$?
exit "$status"
