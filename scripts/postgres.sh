#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests on a free loopback port,
# with its data under DIR (default: a new temp dir), and prints its URL.
# Installs Debian's postgresql where it is missing. Stop it with
#   pg_ctl -D DIR/data stop    (scripts/test.sh does)
set -euo pipefail
find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
bin=$(find_bin)
if [ -z "$bin" ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    bin=$(find_bin)
fi
dir=${1:-$(mktemp -d /tmp/muon-pg.XXXXXX)}
mkdir -p "$dir"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_postgres=()
if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root.
    chown -R postgres "$dir"
    as_postgres=(runuser -u postgres --)
fi
"${as_postgres[@]}" "$bin/initdb" -D "$dir/data" -U muon --auth=trust -E UTF8 >/dev/null
"${as_postgres[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400" >/dev/null
echo "postgres://muon@127.0.0.1:$port/postgres"
