#!/usr/bin/env bash
# The PostgreSQL tests need a server on 127.0.0.1:5432 (user postgres, trust auth).
# This machine kind runs one; if it is down, start it; where none is installed but pg_ctl is,
# start a throwaway cluster. DESTILL3D_TEST_PG_URL tells the tests where it is.
set -euo pipefail
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    exit 0
fi
if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done
fi
if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    dir="${TMPDIR:-/tmp}/destill3d-pg"
    if [ ! -d "$dir" ]; then initdb -D "$dir" -U postgres --auth=trust >/dev/null; fi
    pg_ctl -D "$dir" -o "-p 5432 -k /tmp" -l "$dir/log" start >/dev/null
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done
fi
echo "ensure_postgres: no PostgreSQL on 127.0.0.1:5432 and none could be started" >&2
exit 1
