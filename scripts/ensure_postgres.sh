#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1 and print a SQLAlchemy URL for it.
# Uses the machine's server when one answers on $KBIT_PG_PORT (default 5432); otherwise starts a
# throwaway initdb cluster (as user postgres when run as root) on a free port under /tmp.
set -euo pipefail
port="${KBIT_PG_PORT:-5432}"
if pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
  echo "postgresql+psycopg://postgres@127.0.0.1:${port}/postgres"
  exit 0
fi
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] || { echo "ensure_postgres: no PostgreSQL server answers on 127.0.0.1:${port} and no initdb is installed; install postgresql or set KBIT_TEST_POSTGRES_URL" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d /tmp/kbit-pg.XXXXXX)
run_as() { if [ "$(id -u)" = 0 ]; then chown -R postgres "$data"; su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
run_as "$bindir/initdb -D $data/db -U postgres -A trust >/dev/null"
run_as "$bindir/pg_ctl -D $data/db -o '-p $port -k $data -c listen_addresses=127.0.0.1' -l $data/log -w start >/dev/null"
echo "postgresql+psycopg://postgres@127.0.0.1:${port}/postgres"
