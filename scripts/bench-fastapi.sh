#!/usr/bin/env bash
# muon against the Python stack it replaces, side by side in one run:
# requests/s of `digits` (POST JSON, one 8x8 image) through muon (release
# build, metering on, default settings) and through the FastAPI + ONNX Runtime
# server of scripts/fastapi-digits (the same model and JSON contract, uvicorn
# with one worker per core), at 2, 16 and 64 connections, interleaved round by
# round. Checks first that both answer the same output for the same input.
#   scripts/bench-fastapi.sh [MUON_BIN]
# MUON_BIN defaults to this checkout's release build. BENCH_SECONDS sets each
# run's length (default 5), BENCH_ROUNDS the rounds (default 3). The Python
# packages are installed into $CARGO_TARGET_DIR/fastapi-py on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
bin=$(realpath "${1:-$target/release/muon}")
python=$(./scripts/python-env.sh scripts/fastapi-digits/requirements.txt fastapi-py)
workers=$(nproc)

muon=$(start_muon muon "$bin")
setup muon "$muon"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fastapi=$(start fastapi env DIGITS_MODEL="$PWD/examples/digits/digits.onnx" "$python" -m uvicorn \
    --app-dir scripts/fastapi-digits app:app --host 127.0.0.1 --port "$port" --workers "$workers" \
    --loop uvloop --http httptools --no-access-log)
# uvicorn says it is running before its workers have loaded the model.
for _ in $(seq 1 100); do
    curl -sf -o /dev/null -d "{\"pixels\":$pixels}" "$fastapi/fn/default/digits" && break
    sleep 0.1
done

# The same answer from both: the same digit, the same probabilities (as
# floats: muon prints an f32's shortest form, Python the f64 it widens to).
for body in "{\"pixels\":$pixels}" "{\"images\":[$pixels,$pixels]}"; do
    from_muon=$(curl -sf -d "$body" "$muon/fn/default/digits")
    from_fastapi=$(curl -sf -d "$body" "$fastapi/fn/default/digits")
    python3 - "$from_muon" "$from_fastapi" <<'PY' || { echo "muon answered $from_muon, FastAPI $from_fastapi" >&2; exit 1; }
import json, math, sys
a, b = (json.loads(x) for x in sys.argv[1:])
def same(x, y):
    if isinstance(x, list):
        return isinstance(y, list) and len(x) == len(y) and all(same(p, q) for p, q in zip(x, y))
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, float) or isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-9)
    return x == y
sys.exit(0 if same(a, b) else 1)
PY
done
check_digits "$muon"
for url in "$muon" "$fastapi"; do
    wrk -t2 -c16 -d1s -s "$digits_lua" "$url/fn/default/digits" >/dev/null
done

echo "digits, muon against FastAPI + ONNX Runtime (uvicorn, $workers workers): $(machine)"
echo "muon: $bin (metering on, default settings)"
echo "fastapi: $("$python" -c 'import fastapi, onnxruntime, uvicorn; print(f"fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}, onnxruntime {onnxruntime.__version__}")')"
printf "%-6s %6s %12s %15s %14s\n" round conns muon-req/s fastapi-req/s muon/fastapi
for round in $(seq 1 "$rounds"); do
    for c in 2 16 64; do
        m=$(rps "$muon/fn/default/digits" "$c" "$digits_lua")
        f=$(rps "$fastapi/fn/default/digits" "$c" "$digits_lua")
        printf "%-6s %6s %12s %15s %14s\n" "$round" "$c" "$m" "$f" "$(ratio "$m" "$f")"
    done
done
