#!/usr/bin/env bash
# A throwaway PostgreSQL server from the distribution's package, for the history tests (.ci/run):
#   scripts/ci/postgres.sh start DIR   initdb + start on a Unix socket in DIR; prints the URL
#                                      (as root, DIR's parents must let the postgres user in: /tmp)
#   scripts/ci/postgres.sh stop DIR    stop it (the folder is left for the caller to remove)
# Trust authentication on a socket only this machine can reach (no TCP listener), fsync off:
# a test database, nothing to keep. As root it runs as the package's `postgres` user, because
# PostgreSQL refuses to run as root. Exit 3 when no server binaries are installed.
set -euo pipefail
cmd=${1:?start or stop}; dir=${2:?a folder}
bin=$(dirname "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")
[ -x "$bin/initdb" ] || { echo "postgres.sh: no PostgreSQL server binaries (apt install postgresql)" >&2; exit 3; }
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
port=${JB_PG_PORT:-54329}
case $cmd in
  start)
    mkdir -p "$dir"; chmod 711 "$dir"; [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U joulebench --no-sync >"$dir/initdb.log" 2>&1
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-k $dir -c listen_addresses= -p $port -c fsync=off -c max_connections=50" start >/dev/null
    echo "postgresql://joulebench@/postgres?host=$dir&port=$port" ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
  *) echo "postgres.sh: start or stop" >&2; exit 2 ;;
esac
