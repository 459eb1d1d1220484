#!/bin/sh
# As the official image's entrypoint, for what the stack uses: on the first start, a cluster whose
# superuser is POSTGRES_USER with POSTGRES_PASSWORD and a database POSTGRES_DB; then `postgres`
# listening on every address, password authentication for connections from other containers.
set -eu
BIN=/usr/lib/postgresql/bin
if [ "${1:-}" = postgres ]; then
  shift
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    "$BIN/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -A scram-sha-256 -E UTF8 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    "$BIN/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    PGPASSWORD=$POSTGRES_PASSWORD "$BIN/psql" -q -h /run/postgresql -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
    "$BIN/pg_ctl" -D "$PGDATA" -w stop >/dev/null
  fi
  exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql "$@"
fi
exec "$@"
