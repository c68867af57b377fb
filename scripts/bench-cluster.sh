#!/bin/sh
# bench-cluster.sh — chat-bench against a chatd cluster (issue 12's Bench).
# `make bench-cluster` runs it after `make deps` and `make`: about 2.5
# minutes, and up to 3 more when it waits for other processes to leave the
# CPUs.
#
# The same fan-out on five set-ups, each on fresh chatd (and NATS) processes:
#
#   1node       one chatd without --cluster: the baseline
#   1node-nats  one chatd with --cluster: every post goes to NATS JetStream
#               and is delivered when it comes back (the NATS hop alone)
#   bystander   two clustered nodes, every peer on the first: the second
#               receives every message from NATS and delivers it to nobody
#               (what a node pays per message of a room it does not host)
#   2nodes      two clustered nodes, the peers spread over them
#   3nodes      three
#
# One room of PEERS peers; SENDERS of them post at each rate of RATES
# (messages/s each) in turn for DURATION s, on the same peers. Two rates, so
# that the cost of one more message (a node's idle CPU cancels out) can be
# told from the cost of one more delivery. One chat-bench process holds every peer and is given every
# node's URL (peer i connects to node i mod K), so each delivery's latency
# (the sender's send to the receiver's callback) is read on one clock, and
# is also split into lat_same (sender and receiver on the same node) and
# lat_cross (on different nodes). Every node, nats-server and every
# PostgreSQL process is passed as a --server-pid: chat-bench reads each
# one's CPU from /proc over the load phase (first send to the end of the
# drain), so CPU per delivery is per node, with NATS and PostgreSQL apart.
#
# Placement (2 CPUs here): every server (the nodes, nats-server,
# PostgreSQL) on the first CPU this script may use, chat-bench and
# JSONPlaceholder on the others (taskset; BC_SERVER_CPUS / BC_CLIENT_CPUS
# override). Every node runs --loops 1. So the nodes share one CPU: this
# measures the cost of a cluster, not its scaling (see docs/BENCHMARKS.md).
#
# Everything runs in a private network namespace (scripts/netns.sh; needs
# root or sudo): fixed ports collide with nothing, ICE on 10.77.0.1.
#
# Settings, from the environment:
#   BC_PEERS=100 BC_SENDERS=100 BC_RATES=0.5,1 BC_DURATION=10
#   BC_SETUPS="1node 1node-nats bystander 2nodes 3nodes"
#
# Output: one `cluster-bench setup=...` line per set-up, then `cluster-bench
# summary ...` and `cluster-bench model ...` lines. Raw chat-bench lines in
# build/bench-cluster/results.txt, the exact commands in commands.txt, the
# servers' logs in build/bench-cluster/logs/. Every process started here is
# stopped on exit (also on Ctrl-C).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ -z "${BC_IN_NETNS:-}" ]; then
    for b in build/chatd build/chat-bench; do
        [ -x "$b" ] || { echo "bench-cluster: $b missing (run make)" >&2; exit 1; }
    done
    for t in nats-server curl taskset python3; do
        command -v "$t" >/dev/null 2>&1 ||
            { echo "bench-cluster: $t not found (make deps)" >&2; exit 1; }
    done
    [ -f node_modules/jsonplaceholder/package.json ] || ./scripts/deps.sh
    export BC_IN_NETNS=1
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -E"
    exec $SUDO ./scripts/netns.sh "$0" "$@"
fi

PEERS=${BC_PEERS:-100}
SENDERS=${BC_SENDERS:-100}
RATES=${BC_RATES:-0.5,1}
DURATION=${BC_DURATION:-10}
SETUPS=${BC_SETUPS:-1node 1node-nats bystander 2nodes 3nodes}

OUT=$ROOT/build/bench-cluster
LOGS=$OUT/logs
rm -rf "$OUT"
mkdir -p "$LOGS"
RESULTS=$OUT/results.txt
COMMANDS=$OUT/commands.txt
: >"$RESULTS"
: >"$COMMANDS"
ICE=${NETNS_ADDR:-10.77.0.1}
JP_PORT=3991
PG_PORT=5498
NATS_PORT=4222
NATS_MPORT=8222
NODE_PORT=18701 # node k on 18700 + k, HTTP and UDP
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -c 0 2>/dev/null || true

log() { echo "bench-cluster: $*" >&2; }

# ---- CPU placement: the servers on the first CPU, the client on the rest
expand_cpus() {
    echo "$1" | tr ',' '\n' | awk -F- 'NF == 2 { for (i = $1; i <= $2; i++) print i; next } NF == 1 && $1 != "" { print $1 }'
}
ALLOWED=$(taskset -cp $$ | sed 's/.*: *//')
CPU_LIST=$(expand_cpus "$ALLOWED")
if [ "$(echo "$CPU_LIST" | wc -l)" -ge 2 ] || [ -n "${BC_SERVER_CPUS:-}" ]; then
    SERVER_CPUS=${BC_SERVER_CPUS:-$(echo "$CPU_LIST" | head -n 1)}
    CLIENT_CPUS=${BC_CLIENT_CPUS:-$(echo "$CPU_LIST" | tail -n +2 | paste -sd, -)}
    ON_SERVER="taskset -c $SERVER_CPUS"
    ON_CLIENT="taskset -c $CLIENT_CPUS"
    CLIENT_LOOPS=$(expand_cpus "$CLIENT_CPUS" | wc -l)
else
    ON_SERVER="" ON_CLIENT="" CLIENT_LOOPS=1
    log "one CPU only: servers and client share it"
fi

# ---- cleanup: every process started here, by its pid
NODE_PIDS="" # the nodes of the current set-up
NATS_PID=""  # and its nats-server
JP_STARTED=0
PG_STARTED=0
stop_pids() {
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$@"; do
        n=0
        while kill -0 "$p" 2>/dev/null && [ $n -lt 100 ]; do
            sleep 0.1
            n=$((n + 1))
        done
        if kill -0 "$p" 2>/dev/null; then
            log "pid $p did not stop in 10 s after SIGTERM; killing it"
            kill -KILL "$p" 2>/dev/null || true
        fi
        st=0
        wait "$p" 2>/dev/null || st=$?
        # (nats-server exits 1 after a SIGTERM; chatd should exit 0)
        [ $st -eq 0 ] || [ "$p" = "$NATS_PID" ] || log "pid $p exited $st after SIGTERM"
    done
}
cleanup() {
    trap '' INT TERM
    # the nodes first, while NATS and the database still run (they flush)
    # shellcheck disable=SC2086
    stop_pids $NODE_PIDS
    # shellcheck disable=SC2086
    stop_pids $NATS_PID
    [ $PG_STARTED -eq 0 ] || scripts/pg.sh stop "$OUT/pg" >/dev/null 2>&1 || true
    [ $JP_STARTED -eq 0 ] || scripts/jsonplaceholder.sh stop "$JP_PORT" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits up to $2 tenths of a second for "$3..." to succeed while pid $1 lives.
wait_for() {
    pid=$1 tries=$2
    shift 2
    n=0
    until "$@" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { log "pid $pid exited while starting"; return 1; }
        n=$((n + 1))
        [ $n -lt "$tries" ] || { log "not up after $((tries / 10)) s: $*"; return 1; }
        sleep 0.1
    done
}
note_cmd() { echo "$*" >>"$COMMANDS"; } # the exact command, for the report

# ---- the machine, as make bench reports it
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -n 1)"
    echo "cores=$(nproc)"
    echo "kernel=$(uname -r)"
    echo "nats_server=$(nats-server --version 2>&1 | head -n 1)"
    echo "chatd_commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "server_cpus=${SERVER_CPUS:-all} client_cpus=${CLIENT_CPUS:-all}"
    echo "load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "set=PEERS=$PEERS SENDERS=$SENDERS RATES=$RATES DURATION=$DURATION"
} >"$OUT/machine.txt"
log "$(tr '\n' ' ' <"$OUT/machine.txt")"
log "top before the run:"
top -bn1 | head -n 15 >"$OUT/top-before.txt" 2>/dev/null || true
sed 's/^/    /' "$OUT/top-before.txt" >&2

# ---- helpers shared by every set-up: JSONPlaceholder and PostgreSQL
JP_PARENT_PID=$$
export JP_PARENT_PID
note_cmd "$ON_CLIENT scripts/jsonplaceholder.sh start $JP_PORT"
JP_URL=$($ON_CLIENT scripts/jsonplaceholder.sh start "$JP_PORT")
JP_STARTED=1
note_cmd "$ON_SERVER scripts/pg.sh start $OUT/pg $PG_PORT"
PG_STARTED=1
DB_URL=$($ON_SERVER scripts/pg.sh start "$OUT/pg" "$PG_PORT" | tail -n 1)
log "JSONPlaceholder $JP_URL, PostgreSQL $DB_URL"
# One signing key for the cluster's nodes (tokens are valid on any node).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$OUT/jwt-es256.pem" 2>/dev/null
chmod 600 "$OUT/jwt-es256.pem"

# Every PostgreSQL process (the postmaster and its children, the nodes'
# backends among them), as --server-pid arguments.
pg_pids() {
    pm=$(head -n 1 "$OUT/pg/data/postmaster.pid")
    echo "$pm"
    ps -o pid= --ppid "$pm" | tr -d ' '
}

# ---- the machine is shared: before each set-up, wait (up to QUIET_MAX s,
# QUIET_LEFT s over the run) until the CPUs have been nearly idle (under
# 25 % of one CPU busy, summed over all) for 2 s. chat-bench's
# others_cpu_pct then says what other processes took during the run.
QUIET_MAX=${BC_QUIET_MAX:-60}
QUIET_LEFT=${BC_QUIET_BUDGET:-180}
QUIET_WAITED=0
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4; exit }' /proc/stat; }
wait_quiet() {
    hz=$(getconf CLK_TCK)
    t=0
    while :; do
        a=$(busy_ticks)
        sleep 2
        b=$(busy_ticks)
        pct=$(((b - a) * 100 / (2 * hz)))
        [ "$pct" -ge 25 ] || break
        if [ $t -ge "$QUIET_MAX" ] || [ $QUIET_LEFT -le 0 ]; then
            log "the CPUs are still busy ($pct % of one CPU); measuring anyway"
            break
        fi
        t=$((t + 2)) QUIET_LEFT=$((QUIET_LEFT - 2)) QUIET_WAITED=$((QUIET_WAITED + 2))
    done
    [ $t -eq 0 ] || log "waited $t s for other processes to leave the CPUs"
}

# ---- one set-up: NODES nodes, clustered or not; prints its result line
measure() {
    setup=$1 nodes=$2 clustered=$3 peer_nodes=${4:-$2}
    wait_quiet
    log "== $setup: $nodes node(s), cluster $clustered"
    NATS_PID=""
    if [ "$clustered" -eq 1 ]; then
        rm -rf "$OUT/nats"
        note_cmd "$ON_SERVER nats-server -js -sd $OUT/nats -a 127.0.0.1 -p $NATS_PORT -m $NATS_MPORT"
        $ON_SERVER nats-server -js -sd "$OUT/nats" -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MPORT" \
            >"$LOGS/$setup-nats.log" 2>&1 </dev/null &
        NATS_PID=$!
        wait_for "$NATS_PID" 200 curl -fsS "http://127.0.0.1:$NATS_MPORT/healthz?js-enabled-only=true"
    fi
    urls="" NODE_PIDS=""
    k=1
    while [ $k -le "$nodes" ]; do
        port=$((NODE_PORT + k - 1))
        set -- --listen "127.0.0.1:$port" --ice-address "$ICE" --api-url "$JP_URL" \
            --data-dir "$OUT/$setup-node-$k" --database-url "$DB_URL" \
            --draw-backoff-ms 0 --auto-post-max-ms 3600000 --post-rate 1000000 \
            --offer-rate 1000000 --loops 1 --log-level warn
        if [ "$clustered" -eq 1 ]; then
            set -- "$@" --cluster "nats://127.0.0.1:$NATS_PORT" --node-id "node-$k" \
                --jwt-key "$OUT/jwt-es256.pem" --public-url "http://127.0.0.1:$NODE_PORT"
        fi
        mkdir -p "$OUT/$setup-node-$k"
        note_cmd "$ON_SERVER build/chatd $*"
        $ON_SERVER build/chatd "$@" >"$LOGS/$setup-node-$k.log" 2>&1 </dev/null &
        pid=$!
        NODE_PIDS="$NODE_PIDS $pid"
        # a bystander node (k > peer_nodes) is in the cluster with no peer
        [ $k -gt "$peer_nodes" ] || urls="$urls http://127.0.0.1:$port/"
        k=$((k + 1))
    done
    k=1
    for pid in $NODE_PIDS; do
        # 200 once JSONPlaceholder's users are loaded (and NATS is up)
        wait_for "$pid" 300 curl -fsS -o /dev/null --max-time 1 \
            "http://127.0.0.1:$((NODE_PORT + k - 1))/api/health"
        k=$((k + 1))
    done
    set -- --scenario fanout --peers "$PEERS" --senders "$SENDERS" --rates "$RATES" \
        --duration "$DURATION" --ice-address "$ICE" --transport mux --tag "$setup"
    for u in $urls; do set -- "$@" --url "$u"; done
    for p in $NODE_PIDS $NATS_PID $(pg_pids); do set -- "$@" --server-pid "$p"; done
    echo "# $setup: --server-pid order: $nodes node(s) (the first $peer_nodes with peers)$([ -n "$NATS_PID" ] && echo ', nats-server'), then PostgreSQL's processes" >>"$COMMANDS"
    note_cmd "$ON_CLIENT build/chat-bench --loops $CLIENT_LOOPS $*"
    rc=0
    $ON_CLIENT build/chat-bench --loops "$CLIENT_LOOPS" "$@" >"$OUT/$setup.txt" 2>"$LOGS/$setup-bench.log" || rc=$?
    [ $rc -eq 0 ] || log "chat-bench exit $rc: $(tail -n 3 "$LOGS/$setup-bench.log")"
    grep '^scenario=fanout' "$OUT/$setup.txt" |
        sed "s/\$/ bc_setup=$setup bc_nodes=$nodes bc_peer_nodes=$peer_nodes bc_clustered=$clustered/" >>"$RESULTS" || true
    # the nodes first, while NATS and the database still run (they flush)
    # shellcheck disable=SC2086
    stop_pids $NODE_PIDS
    # shellcheck disable=SC2086
    stop_pids $NATS_PID
    NODE_PIDS="" NATS_PID=""
}

T0=$(date +%s)
for s in $SETUPS; do
    case "$s" in
    1node) measure 1node 1 0 ;;
    1node-nats) measure 1node-nats 1 1 ;;
    bystander) measure bystander 2 1 1 ;;
    2nodes) measure 2nodes 2 1 ;;
    3nodes) measure 3nodes 3 1 ;;
    *) log "unknown set-up $s (1node 1node-nats bystander 2nodes 3nodes)"; exit 2 ;;
    esac
done
echo "load_at_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
echo "run_seconds=$(($(date +%s) - T0))" >>"$OUT/machine.txt"
echo "waited_for_quiet_s=$QUIET_WAITED" >>"$OUT/machine.txt"

python3 scripts/bench-cluster-report.py "$RESULTS" "$OUT/machine.txt" "$PEERS" |
    tee "$OUT/report.txt"
