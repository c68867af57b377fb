#!/bin/sh
# make cluster: a chatd cluster on this machine, for trying it out.
#
#   NATS (JetStream)  nats-server, data in build/cluster/nats/
#   PostgreSQL        scripts/pg.sh, data in build/cluster/pg/
#   JSONPlaceholder   the public service when it answers, else the npm
#                     server on 127.0.0.1 (as make run does)
#   3 chatd nodes     node-1..node-3 on 127.0.0.1:8081..8083 (HTTP, and UDP
#                     for media on the same port numbers), one JWT key
#                     (build/cluster/jwt-es256.pem), one public URL
#   nginx             HTTPS front door on 127.0.0.1:8443, from
#                     deploy/nginx/chatd-cluster.conf, with a self-signed
#                     certificate for 127.0.0.1 and localhost; and plain
#                     HTTP on 127.0.0.1:8088 for chat-client (which has no
#                     TLS); its logs in build/cluster/nginx/
#
# It prints one URL to open. Ctrl-C (or SIGTERM) stops everything it
# started. Logs: build/cluster/logs/. Arguments go to every chatd node (as
# make run ARGS=...). Settings, from the environment:
#
#   CLUSTER_NODES=3  CLUSTER_BASE_PORT=8081  CLUSTER_HTTPS_PORT=8443
#   CLUSTER_HTTP_PORT=8088 (0: no plain-HTTP listener)
#   CLUSTER_NATS_PORT=4322  CLUSTER_PG_PORT=55432  JSONPLACEHOLDER_PORT=3998
#   CLUSTER_ICE_ADDRESS=ADDR   --ice-address for every node (default: none,
#                              as make run: every interface)
#   JSONPLACEHOLDER_URL=URL    use this JSONPlaceholder
#   CHATD=PATH                 the chatd binary (default build/chatd)
#
# The chatd command line of a node is built in node_args below.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DIR=$ROOT/build/cluster
NODES=${CLUSTER_NODES:-3}
BASE_PORT=${CLUSTER_BASE_PORT:-8081}
HTTPS_PORT=${CLUSTER_HTTPS_PORT:-8443}
HTTP_PORT=${CLUSTER_HTTP_PORT:-8088}
NATS_PORT=${CLUSTER_NATS_PORT:-4322}
PG_PORT=${CLUSTER_PG_PORT:-55432}
JP_PORT=${JSONPLACEHOLDER_PORT:-3998}
PUBLIC_URL=https://127.0.0.1:$HTTPS_PORT
NATS_URL=nats://127.0.0.1:$NATS_PORT
TEMPLATE=$ROOT/deploy/nginx/chatd-cluster.conf   # filled by scripts/nginx-conf.sh
PUBLIC_JP=https://jsonplaceholder.typicode.com
CHATD=${CHATD:-build/chatd}

say() { echo "cluster: $*"; }
die() {
    echo "cluster: $*" >&2
    exit 1
}

case "$NODES" in [1-9]) ;; *) die "CLUSTER_NODES must be 1..9" ;; esac

# The chatd command line of node $1 (1..NODES), listening on port $2. Every
# node: the same --public-url (the front door: the tokens' issuer), the
# same --jwt-key, the same database and NATS; each its own --listen, UDP
# --rtc-port, data folder and --node-id. --trusted-proxy: every request
# reaches chatd from nginx's one address, and nginx's X-Real-IP names the
# client, so chatd's per-address limits count clients.
node_args() {
    n=$1 port=$2
    set -- --listen "127.0.0.1:$port" --rtc-port "$port" \
        --public-url "$PUBLIC_URL" \
        --jwt-key "$DIR/jwt-es256.pem" \
        --database-url "$DB_URL" \
        --data-dir "$DIR/node-$n" \
        --api-url "$JSONPLACEHOLDER_URL" \
        --trusted-proxy 127.0.0.1
    [ -z "${CLUSTER_ICE_ADDRESS:-}" ] || set -- "$@" --ice-address "$CLUSTER_ICE_ADDRESS"
    [ "$CLUSTER_FLAGS" -eq 0 ] || set -- "$@" --cluster "$NATS_URL" --node-id "node-$n"
    printf '%s\n' "$@"
}

for t in nats-server nginx openssl curl ss; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found: run scripts/deps.sh (make deps)"
done
[ -x "$CHATD" ] || die "$CHATD missing: run make"
[ -f "$TEMPLATE" ] || die "$TEMPLATE missing"

# A chatd without --cluster (before issue 12's C side) still runs the rest:
# independent nodes on one database, behind the same nginx.
if "$CHATD" --help 2>&1 | grep -q -- '--cluster'; then
    CLUSTER_FLAGS=1
else
    CLUSTER_FLAGS=0
    say "warning: $CHATD has no --cluster flag; the nodes run unclustered (each its own rooms)"
fi

# ---- ports ---------------------------------------------------------------
tcp_busy() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
udp_busy() { [ -n "$(ss -Hlun "sport = :$1" 2>/dev/null)" ]; }
busy=""
check_tcp() { if tcp_busy "$1"; then busy="$busy
  TCP $1 ($2) is in use; $3"; fi; }
check_udp() { if udp_busy "$1"; then busy="$busy
  UDP $1 ($2) is in use; $3"; fi; }

# One make cluster at a time on this folder: it owns build/cluster/.
mkdir -p "$DIR"
if [ -f "$DIR/cluster.pid" ]; then
    other=$(cat "$DIR/cluster.pid" 2>/dev/null || true)
    case "$other" in '' | *[!0-9]*) other=0 ;; esac
    if [ "$other" -gt 0 ] && [ "$other" -ne $$ ] &&
        { tr '\0' ' ' <"/proc/$other/cmdline"; } 2>/dev/null | grep -q 'cluster\.sh'; then
        die "make cluster already runs here (pid $other); Ctrl-C it first"
    fi
fi
echo $$ >"$DIR/cluster.pid"

# A PostgreSQL of a previous run that was killed before it could stop it.
if [ -f "$DIR/pg/data/PG_VERSION" ] && ./scripts/pg.sh status "$DIR/pg" 2>/dev/null; then
    say "stopping the PostgreSQL a previous run left in $DIR/pg"
    ./scripts/pg.sh stop "$DIR/pg" || true
fi

check_tcp "$HTTPS_PORT" "nginx, HTTPS" "set CLUSTER_HTTPS_PORT"
[ "$HTTP_PORT" -eq 0 ] || check_tcp "$HTTP_PORT" "nginx, plain HTTP" "set CLUSTER_HTTP_PORT (0: none)"
check_tcp "$NATS_PORT" "nats-server" "set CLUSTER_NATS_PORT"
check_tcp "$PG_PORT" "PostgreSQL" "set CLUSTER_PG_PORT"
i=1
while [ $i -le "$NODES" ]; do
    p=$((BASE_PORT + i - 1))
    check_tcp $p "chatd node-$i, HTTP" "set CLUSTER_BASE_PORT"
    check_udp $p "chatd node-$i, media" "set CLUSTER_BASE_PORT"
    i=$((i + 1))
done
[ -z "$busy" ] || die "cannot start, a port is taken (a make cluster already running?):$busy"

# ---- stop everything on exit ---------------------------------------------
# Every server runs in a session of its own (setsid), so Ctrl-C reaches this
# script only, and the cleanup stops them in order: the nodes while NATS
# and the database still run, so they flush every log row.
PIDS=""     # name:pid of every process started here, in start order
JP_STARTED=0
PG_STARTED=0
stopping=0
cleanup() {
    [ $stopping -eq 0 ] || return 0
    stopping=1
    trap '' INT TERM
    echo
    say "stopping"
    # the front door first, then the nodes (they flush their log rows to
    # the database), then NATS, the database, JSONPlaceholder
    for want in nginx node nats; do
        for e in $PIDS; do
            name=${e%%:*} pid=${e#*:}
            case "$name" in "$want"*) kill -TERM "$pid" 2>/dev/null || true ;; esac
        done
        for e in $PIDS; do
            name=${e%%:*} pid=${e#*:}
            case "$name" in "$want"*) ;; *) continue ;; esac
            n=0
            while kill -0 "$pid" 2>/dev/null && [ $n -lt 100 ]; do
                sleep 0.1
                n=$((n + 1))
            done
            if kill -0 "$pid" 2>/dev/null; then
                say "$name (pid $pid) did not stop in 10 s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            wait "$pid" 2>/dev/null || true
        done
    done
    [ $PG_STARTED -eq 0 ] || ./scripts/pg.sh stop "$DIR/pg" 2>/dev/null || true
    [ $JP_STARTED -eq 0 ] || ./scripts/jsonplaceholder.sh stop "$JP_PORT" >/dev/null 2>&1 || true
    rm -f "$DIR/cluster.pid"
    say "stopped"
}
trap 'cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$DIR/logs"
LOGS=$DIR/logs

# Waits until command "$2..." succeeds, for $1 tenths of a second, while the
# process named by $NAME/$PID lives; else shows its log and exits.
wait_for() {
    tries=$1
    shift
    n=0
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "cluster: $NAME exited while starting; the end of $LOG:" >&2
            tail -n 20 "$LOG" >&2
            exit 1
        fi
        n=$((n + 1))
        [ $n -lt "$tries" ] || {
            echo "cluster: $NAME did not come up; the end of $LOG:" >&2
            tail -n 20 "$LOG" >&2
            exit 1
        }
        sleep 0.1
    done
}

# ---- JSONPlaceholder, as scripts/run.sh ----------------------------------
if [ -n "${JSONPLACEHOLDER_URL:-}" ]; then
    say "JSONPlaceholder from JSONPLACEHOLDER_URL: $JSONPLACEHOLDER_URL"
elif curl -fsS --max-time 4 "$PUBLIC_JP/users/1" >/dev/null 2>&1; then
    JSONPLACEHOLDER_URL=$PUBLIC_JP
    say "JSONPlaceholder: the public service ($PUBLIC_JP)"
else
    JP_PARENT_PID=$$
    export JP_PARENT_PID
    JSONPLACEHOLDER_URL=$(./scripts/jsonplaceholder.sh start "$JP_PORT")
    JP_STARTED=1
    say "the public JSONPlaceholder is not reachable; using the local server from npm at $JSONPLACEHOLDER_URL"
fi

# ---- PostgreSQL -----------------------------------------------------------
PG_STARTED=1
DB_URL=$(setsid -w ./scripts/pg.sh start "$DIR/pg" "$PG_PORT")
say "PostgreSQL: $DB_URL (data in build/cluster/pg/)"

# ---- NATS with JetStream --------------------------------------------------
mkdir -p "$DIR/nats"
NAME=nats-server LOG=$LOGS/nats.log
setsid nats-server -js -sd "$DIR/nats" -a 127.0.0.1 -p "$NATS_PORT" -n chatd-demo >"$LOG" 2>&1 </dev/null &
PID=$!
PIDS="$PIDS nats:$PID"
wait_for 100 tcp_busy "$NATS_PORT"
say "NATS: $NATS_URL (JetStream, data in build/cluster/nats/)"

# ---- the shared JWT key ---------------------------------------------------
# Made once, before any node starts (a node would make its own otherwise,
# and three at once would race). Every node must sign with the same key.
if [ ! -s "$DIR/jwt-es256.pem" ]; then
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$DIR/jwt-es256.pem" 2>/dev/null) || die "openssl could not make the JWT key"
fi

# ---- the chatd nodes ------------------------------------------------------
i=1
UPSTREAMS=""
while [ $i -le "$NODES" ]; do
    p=$((BASE_PORT + i - 1))
    mkdir -p "$DIR/node-$i"
    NAME=node-$i LOG=$LOGS/node-$i.log
    # node_args prints one argument a line; none holds a newline
    old_ifs=$IFS
    IFS='
'
    # shellcheck disable=SC2046
    set -- $(node_args $i $p) "$@"
    IFS=$old_ifs
    setsid "$CHATD" "$@" >"$LOG" 2>&1 </dev/null &
    PID=$!
    PIDS="$PIDS node-$i:$PID"
    # drop this node's arguments again, keeping the caller's ($@ of make)
    shift $(($(node_args $i $p | wc -l)))
    UPSTREAMS="$UPSTREAMS 127.0.0.1:$p"
    i=$((i + 1))
done
i=1
while [ $i -le "$NODES" ]; do
    p=$((BASE_PORT + i - 1))
    NAME=node-$i LOG=$LOGS/node-$i.log
    PID=$(for e in $PIDS; do case "$e" in "node-$i:"*) echo "${e#*:}" ;; esac; done)
    # any HTTP answer will do (503 while JSONPlaceholder is slow)
    wait_for 300 curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/api/health"
    say "node-$i: http://127.0.0.1:$p/ (UDP $p), pid $PID, log build/cluster/logs/node-$i.log"
    i=$((i + 1))
done

# ---- nginx, the front door ------------------------------------------------
NGX=$DIR/nginx
# The template filled in (@LISTEN@, one "server" line per node, the
# plain-HTTP listener), a self-signed certificate for 127.0.0.1 and
# localhost, checked with nginx -t: scripts/nginx-conf.sh, as the cluster
# suite does it.
# shellcheck disable=SC2086
TEMPLATE=$TEMPLATE ./scripts/nginx-conf.sh --plain "$HTTP_PORT" "$NGX" "127.0.0.1:$HTTPS_PORT" $UPSTREAMS ||
    die "could not make the nginx configuration in $NGX"
NAME=nginx LOG=$NGX/error.log
setsid nginx -p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/error.log" -g 'daemon off;' \
    >"$LOGS/nginx.out" 2>&1 </dev/null &
PID=$!
PIDS="$PIDS nginx:$PID"
wait_for 100 curl -sk -o /dev/null --max-time 1 "$PUBLIC_URL/api/health"

echo
say "open $PUBLIC_URL/ (a self-signed certificate: accept it in the browser)"
[ "$HTTP_PORT" -eq 0 ] ||
    say "plain HTTP for chat-client: build/chat-client --url http://127.0.0.1:$HTTP_PORT/"
say "Ctrl-C stops nginx, the $NODES nodes, NATS and PostgreSQL; logs in build/cluster/logs/ and build/cluster/nginx/"

# Runs until Ctrl-C. A process that dies is reported once and the rest
# carry on: killing a node (kill -9 PID) is how to watch a failover, and
# stopping nats-server how to watch posts refused until it is back.
dead=""
while :; do
    for e in $PIDS; do
        case " $dead " in *" $e "*) continue ;; esac
        if ! kill -0 "${e#*:}" 2>/dev/null; then
            say "${e%%:*} (pid ${e#*:}) exited; the rest carry on (Ctrl-C stops them; logs in build/cluster/)"
            dead="$dead $e"
        fi
    done
    sleep 1
done
