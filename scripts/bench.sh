#!/bin/sh
# bench.sh — chatd against Janus TextRoom, same machine, same run, same
# client (build/chat-bench). `make bench` runs it after `make deps` and
# `make`; it writes docs/BENCHMARKS.md and docs/bench-p99.png.
#
#   scripts/bench.sh            the default set (about 5 minutes on 2 cores)
#   BENCH_QUICK=1 scripts/bench.sh    a smaller set (about 2 minutes), for
#                               trying the script; writes to build/bench only
#
# Everything runs inside a private network namespace (scripts/netns.sh):
# Janus gathers no loopback candidates, so both servers and the client use
# the namespace's veth address 10.77.0.1 for ICE, and HTTP on 127.0.0.1.
# Started here and stopped at the end: the real JSONPlaceholder
# (scripts/jsonplaceholder.sh), a private PostgreSQL (scripts/pg.sh), chatd
# (chat mode, SQLite, then PostgreSQL) and Janus (scripts/janus.sh: with its
# default threading, then with event_loops = the number of cores).
#
# Raw results (one KEY=VALUE line per measurement) go to
# build/bench/results.txt, server logs to build/bench/.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ -z "${BENCH_IN_NETNS:-}" ]; then
    # Janus and gnuplot come with `make deps` (scripts/deps.sh); install them
    # here too, so the script also runs on its own.
    for p in janus gnuplot-nox; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            SUDO=""
            [ "$(id -u)" -eq 0 ] || SUDO=sudo
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$p"
        fi
    done
    for b in build/chatd build/chat-bench; do
        [ -x "$b" ] || { echo "bench.sh: $b missing (run make)" >&2; exit 1; }
    done
    [ -f node_modules/jsonplaceholder/package.json ] || ./scripts/deps.sh
    export BENCH_IN_NETNS=1
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -E"
    exec $SUDO ./scripts/netns.sh "$0" "$@"
fi

OUT=$ROOT/build/bench
rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS=$OUT/results.txt
COMMANDS=$OUT/commands.txt
: >"$RESULTS"
: >"$COMMANDS"
ICE=${NETNS_ADDR:-10.77.0.1}
CORES=$(nproc)
JP_PORT=3990
PG_PORT=5499
CHATD_PORT=18700
JANUS_PORT=18788

# The default set; BENCH_QUICK=1 shrinks it.
if [ -n "${BENCH_QUICK:-}" ]; then
    SMALL=20 SMALL_RATES=1,4 LARGE=60 LARGE_SENDERS=10 LARGE_RATES=1,4 DURATION=2
    CAP_MAX=100 CAP_STEP=50
else
    SMALL=100 SMALL_RATES=0.5,1,2,4,8 LARGE=500 LARGE_SENDERS=50 LARGE_RATES=0.25,0.5,1,2
    DURATION=4 CAP_MAX=500 CAP_STEP=250
fi

log() { echo "bench: $*" >&2; }

cleanup() {
    [ -n "${CHATD_PID:-}" ] && kill "$CHATD_PID" 2>/dev/null || true
    scripts/janus.sh stop "$OUT/janus" 2>/dev/null || true
    scripts/jsonplaceholder.sh stop "$JP_PORT" >/dev/null 2>&1 || true
    scripts/pg.sh stop "$OUT/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

# Runs chat-bench, keeping the exact command and the result lines.
bench() {
    echo "build/chat-bench $*" >>"$COMMANDS"
    log "chat-bench $*"
    build/chat-bench "$@" | tee -a "$RESULTS" || log "chat-bench reported failures (kept in the results)"
}

start_chatd() { # NAME EXTRA-FLAGS...
    name=$1
    shift
    rm -rf "$OUT/chatd-$name"
    mkdir -p "$OUT/chatd-$name"
    set -- --listen "127.0.0.1:$CHATD_PORT" --ice-address "$ICE" --api-url "$JP_URL" \
        --data-dir "$OUT/chatd-$name" --draw-backoff-ms 0 --auto-post-max-ms 3600000 \
        --post-rate 1000000 --offer-rate 1000000 --log-level warn "$@"
    echo "build/chatd $*" >>"$COMMANDS"
    build/chatd "$@" >"$OUT/chatd-$name.out" 2>"$OUT/chatd-$name.log" &
    CHATD_PID=$!
    i=0
    until grep -q "listening on" "$OUT/chatd-$name.out" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$CHATD_PID" 2>/dev/null; then
            log "chatd did not start:"
            cat "$OUT/chatd-$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    # The user directory loads in the background; wait for it.
    i=0
    until curl -sf "http://127.0.0.1:$CHATD_PORT/api/health" >/dev/null; do
        i=$((i + 1))
        [ $i -gt 100 ] && { log "chatd not healthy"; exit 1; }
        sleep 0.1
    done
}

stop_chatd() {
    kill "$CHATD_PID"
    wait "$CHATD_PID" || true
    CHATD_PID=""
}

metric() { # NAME: one value from chatd's /metrics
    curl -sf "http://127.0.0.1:$CHATD_PORT/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

# The scenarios every server runs: fan-out in a room of SMALL peers (all
# posting) and of LARGE peers (LARGE_SENDERS posting), then capacity.
server_scenarios() { # TARGET URL PID TAG
    t=$1 url=$2 pid=$3 tag=$4
    bench --target "$t" --url "$url" --server-pid "$pid" --tag "$tag" --ice-address "$ICE" \
        --scenario fanout --peers "$SMALL" --rates "$SMALL_RATES" --duration "$DURATION"
    restart_server "$tag"
    pid=$SERVER_PID
    bench --target "$t" --url "$url" --server-pid "$pid" --tag "$tag" --ice-address "$ICE" \
        --scenario fanout --peers "$LARGE" --senders "$LARGE_SENDERS" --rates "$LARGE_RATES" \
        --duration "$DURATION"
    restart_server "$tag"
    pid=$SERVER_PID
    bench --target "$t" --url "$url" --server-pid "$pid" --tag "$tag" --ice-address "$ICE" \
        --scenario capacity --peers "$CAP_MAX" --step "$CAP_STEP" --concurrency 8
}

# A fresh server process for each scenario, so one's leftovers (queues,
# sessions closing) do not weigh on the next.
restart_server() { # TAG
    case "$1" in
    chatd)
        stop_chatd
        start_chatd sqlite
        SERVER_PID=$CHATD_PID
        ;;
    janus)
        scripts/janus.sh stop "$OUT/janus"
        SERVER_PID=$(scripts/janus.sh start "$OUT/janus" "$JANUS_PORT" t0)
        echo "scripts/janus.sh start $OUT/janus $JANUS_PORT t0" >>"$COMMANDS"
        ;;
    janus-loops*)
        scripts/janus.sh stop "$OUT/janus"
        SERVER_PID=$(scripts/janus.sh start "$OUT/janus" "$JANUS_PORT" t0 "$CORES")
        echo "scripts/janus.sh start $OUT/janus $JANUS_PORT t0 $CORES" >>"$COMMANDS"
        ;;
    esac
}

T0=$(date +%s)
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "cores=$CORES"
    echo "memory=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel=$(uname -r)"
    echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "janus=$(dpkg-query -W -f='${Version}' janus)"
    echo "openssl=$(openssl version)"
    echo "chatd_commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

JP_URL=$(scripts/jsonplaceholder.sh start "$JP_PORT")
PG_URL=$(scripts/pg.sh start "$OUT/pg" "$PG_PORT")

# chatd (chat mode, SQLite)
log "chatd"
start_chatd sqlite
SERVER_PID=$CHATD_PID
server_scenarios chatd "http://127.0.0.1:$CHATD_PORT/" "$SERVER_PID" chatd
stop_chatd

# db: log rows per second and write lag, SQLite then PostgreSQL, under the
# same fan-out (every delivered message is one row).
for db in sqlite postgres; do
    if [ "$db" = sqlite ]; then start_chatd db-sqlite; else start_chatd db-pg --database-url "$PG_URL"; fi
    rows0=$(metric chatd_db_rows_written_total)
    s0=$(date +%s.%N)
    bench --target chatd --url "http://127.0.0.1:$CHATD_PORT/" --server-pid "$CHATD_PID" \
        --tag "db-$db" --ice-address "$ICE" --scenario fanout --peers "$SMALL" --senders 50 \
        --rates 4 --duration "$DURATION" >/dev/null
    rows1=$(metric chatd_db_rows_written_total)
    s1=$(date +%s.%N)
    lag=$(metric chatd_db_write_latency_avg_seconds)
    depth=$(metric chatd_db_queue_depth)
    echo "scenario=db target=chatd tag=db-$db rows=$((${rows1:-0} - ${rows0:-0})) seconds=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.2f", b - a }') write_latency_avg_s=${lag:-nan} queue_depth_after=${depth:-nan}" |
        tee -a "$RESULTS"
    stop_chatd
done

# Janus TextRoom, default threading (one loop thread per handle)
log "janus (default threading)"
SERVER_PID=$(scripts/janus.sh start "$OUT/janus" "$JANUS_PORT" t0)
echo "scripts/janus.sh start $OUT/janus $JANUS_PORT t0" >>"$COMMANDS"
server_scenarios janus "http://127.0.0.1:$JANUS_PORT/janus" "$SERVER_PID" janus
scripts/janus.sh stop "$OUT/janus"
cp "$OUT/janus/janus.jcfg" "$OUT/janus-default.jcfg"

# Janus TextRoom, event_loops = cores
log "janus (event_loops = $CORES)"
SERVER_PID=$(scripts/janus.sh start "$OUT/janus" "$JANUS_PORT" t0 "$CORES")
echo "scripts/janus.sh start $OUT/janus $JANUS_PORT t0 $CORES" >>"$COMMANDS"
server_scenarios janus "http://127.0.0.1:$JANUS_PORT/janus" "$SERVER_PID" "janus-loops$CORES"
scripts/janus.sh stop "$OUT/janus"
cp "$OUT/janus/janus.jcfg" "$OUT/janus-loops.jcfg"

# jwt: chatd's signer and verifier against OpenSSL's own ECDSA P-256 speed.
bench --scenario jwt --duration 3
echo "openssl speed -seconds 3 ecdsap256" >>"$COMMANDS"
openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {
    printf "scenario=openssl target=openssl sign_per_s=%s verify_per_s=%s\n", $(NF-1), $NF }' |
    tee -a "$RESULTS"

echo "bench_seconds=$(($(date +%s) - T0))" >>"$OUT/machine.txt"
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
log "done in $(($(date +%s) - T0)) s; writing the report"

DOCS=$ROOT/docs
[ -n "${BENCH_QUICK:-}" ] && DOCS=$OUT
python3 scripts/bench-report.py "$OUT" "$DOCS"
