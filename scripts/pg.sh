#!/bin/sh
# A private PostgreSQL 15 server for tests, in a directory of its own.
#
#   scripts/pg.sh start DIR PORT   initdb DIR/data if it is not there yet (user
#                                  "chat", trust auth), start the server on
#                                  127.0.0.1:PORT with its socket in DIR, and
#                                  print the DATABASE_URL
#   scripts/pg.sh stop DIR         stop it (fast: open connections are cut)
#   scripts/pg.sh status DIR       exit 0 when it runs
#
# start works again on a DIR that was stopped, keeping the data, which is
# how the store tests simulate a database outage. The server is started
# with fsync=off: test data is not worth the disk flushes. initdb refuses to
# run as root, so as root the server runs as the "postgres" user, and DIR
# (created if missing) is handed to that user; every directory above DIR
# must then be searchable by it (/tmp is).
set -eu

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

usage() {
    echo "usage: $0 start DIR PORT | stop DIR | status DIR" >&2
    exit 2
}

# Runs a PostgreSQL program as the server's user.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2

case "$cmd" in
start)
    [ $# -eq 3 ] || usage
    port=$3
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" -ne 0 ] || chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$PGBIN/initdb" -D "$dir/data" -A trust -U chat >"$dir/initdb.log" 2>&1 || {
            echo "pg.sh: initdb failed, see $dir/initdb.log" >&2
            exit 1
        }
    fi
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -w -t 30 -l "$dir/log" \
        -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null || {
        echo "pg.sh: server did not start, see $dir/log" >&2
        exit 1
    }
    echo "postgresql://chat@127.0.0.1:$port/postgres"
    ;;
stop)
    [ $# -eq 2 ] || usage
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
    ;;
status)
    [ $# -eq 2 ] || usage
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null
    ;;
*)
    usage
    ;;
esac
