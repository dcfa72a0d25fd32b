# Shell functions and settings shared by the side-by-side benchmarks
# (bench-compare.sh, bench-metering.sh, bench-fastapi.sh). Source it from the
# repository root:  . scripts/bench-lib.sh
# It sets target, guest, seconds (BENCH_SECONDS, default 5), rounds
# (BENCH_ROUNDS, default 3), pixels and digits_lua, installs wrk and bc where
# missing, and makes $work, a temp dir removed on exit, after every server
# started with `start` is stopped.

target="${CARGO_TARGET_DIR:-target}"
guest="$target/wasm32-wasip2/guest"
seconds="${BENCH_SECONDS:-5}"
rounds="${BENCH_ROUNDS:-3}"
if ! command -v wrk >/dev/null || ! command -v bc >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk bc >/dev/null
fi
work=$(mktemp -d)
# Servers' pids go to files: `start` runs in a command substitution, a
# subshell, whose variables the cleanup would never see.
bench_cleanup() {
    for pid in "$work"/*.pid; do
        [ -e "$pid" ] || continue
        kill "$(cat "$pid")" 2>/dev/null || true
        # Let a server with workers (uvicorn) stop them before its dir goes.
        for _ in $(seq 1 50); do kill -0 "$(cat "$pid")" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$work"
}
trap bench_cleanup EXIT

# start NAME COMMAND...: runs a server that prints "... listening on URL" or
# "... running on URL" (muon, uvicorn; on stdout or stderr), echoes the URL.
start() {
    local name=$1 url; shift
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    echo $! >"$work/$name.pid"
    for _ in $(seq 1 600); do
        url=$(sed -n 's/.*\(listening\|running\) on \(http[^ ]*\).*/\2/p' "$work/$name.out" "$work/$name.err" | head -1)
        [ -n "$url" ] && { echo "$url"; return; }
        kill -0 "$(cat "$work/$name.pid")" 2>/dev/null || break
        sleep 0.05
    done
    echo "$name did not start" >&2; cat "$work/$name.err" >&2; exit 1
}

# start_muon NAME BINARY [FLAGS...]: muon on a free port with its own data dir
# ($work/NAME); echoes the URL.
start_muon() {
    local name=$1 binary=$2; shift 2
    start "$name" "$binary" serve --listen 127.0.0.1:0 --data-dir "$work/$name" "$@"
}

# setup NAME URL: deploys hello and digits (public) with the digits model to
# the muon started as NAME.
setup() {
    local auth=(-H "authorization: Bearer $(cat "$work/$1/admin.key")")
    curl -sf "${auth[@]}" -XPUT --data-binary @"$guest/hello.wasm" "$2/v1/functions/hello?max_concurrency=1000&public=true" >/dev/null
    curl -sf "${auth[@]}" -XPUT --data-binary @examples/digits/digits.onnx "$2/v1/models/digits" >/dev/null
    curl -sf "${auth[@]}" -XPUT --data-binary @"$guest/digits.wasm" "$2/v1/functions/digits?max_concurrency=1000&public=true&models=digits" >/dev/null
}

# One image of a 0, and the wrk script that POSTs it as digits' JSON.
pixels='[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0]'
digits_lua="$work/digits.lua"
cat >"$digits_lua" <<LUA
wrk.method = "POST"
wrk.body = '{"pixels":$pixels}'
wrk.headers["content-type"] = "application/json"
LUA

# check_digits URL: fails unless URL's digits answers the image above with 0.
check_digits() {
    local answer
    answer=$(curl -sf -d "{\"pixels\":$pixels}" "$1/fn/default/digits")
    echo "$answer" | grep -q '"digit":0' || { echo "digits answered $answer at $1" >&2; exit 1; }
}

# rps URL CONNECTIONS [LUA]: requests/s of one wrk run.
rps() {
    local threads=$(( $2 < 2 ? 1 : 2 )) script=()
    [ -n "${3:-}" ] && script=(-s "$3")
    wrk -t"$threads" -c"$2" -d"${seconds}s" "${script[@]}" "$1" | awk '/Requests\/sec/ {printf "%.0f", $2}'
}

# ratio A B: A / B with two decimals.
ratio() { printf "%.2f" "$(echo "$1 / $2" | bc -l)"; }

# machine: one line describing the machine the figures come from.
machine() {
    echo "$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), wrk on the same machine, ${seconds}s per run"
}
