#!/bin/sh
# bench.sh — chatd against Janus TextRoom, same machine, same run, same
# client (build/chat-bench). `make bench` runs it after `make deps` and
# `make`; it writes docs/BENCHMARKS.md and docs/bench-p99.png.
#
#   scripts/bench.sh                  the default set: about 40 minutes with the
#                                     four servers (capacity and the seed search
#                                     stop at their time budgets, 300 and 240 s
#                                     per server); docs/BENCHMARKS.md gives the
#                                     run time of the last run
#   BENCH_QUICK=1 scripts/bench.sh    a small set (about 3 minutes), for
#                                     trying the script; writes to build/bench only
#
# Every knob of the set can be overridden from the environment (BENCH_SMALL,
# BENCH_SMALL_RATES, BENCH_LARGE, BENCH_LARGE_SENDERS, BENCH_LARGE_RATES,
# BENCH_DURATION, BENCH_CAP_AT, BENCH_CAP_BUDGET, BENCH_CAP_HOLD,
# BENCH_SEED_SIZES, BENCH_SEED_RESOLUTION, BENCH_SEED_DURATION,
# BENCH_SEED_BUDGET), and BENCH_SERVERS picks the servers (default: chatd
# chatd-nice janus-loops janus). A run with any override, or quick, writes
# to build/bench only; BENCH_DOCS=1 writes docs/ anyway.
#
# Servers, each scenario on a fresh process:
#   chatd        the default transport (one UDP port for every peer, ICE-lite;
#                chat-bench --transport mux)
#   chatd-nice   chatd --rtc-port 0: a libnice agent and socket per peer
#                (chat-bench --transport nice); skipped, with a note, when
#                this chatd has no --rtc-port yet (then the chatd row is the
#                libnice transport too, and chat-bench uses nice towards it)
#   janus-loops  Janus TextRoom, event_loops = 2 (BENCH_JANUS_LOOPS): the
#                configuration issue 10's targets compare against
#   janus        Janus TextRoom with its default threading (a thread per
#                handle): fan-out only
# Scenarios: fan-out in a room of SMALL peers (all posting, each rate of
# SMALL_RATES, then half the best) and of LARGE peers (LARGE_SENDERS
# posting), idle capacity in the steps of CAP_AT within CAP_BUDGET seconds,
# and the seed workload (the largest room where every member posts every
# 0-10 s with p99 < 100 ms and nothing lost), then chatd's database rows
# (SQLite, PostgreSQL) and JWT speed.
#
# The load generator must not be what saturates. The server (chatd
# --loops 1, or Janus) runs on the first CPU this script may use and
# chat-bench on the others (taskset; BENCH_SERVER_CPUS / BENCH_CLIENT_CPUS
# override), with the helpers (JSONPlaceholder, PostgreSQL) on the client's
# side, so the server's CPU is its own. Every result line carries the
# client's CPU use and CPU count; a run where the client used 90 % or more
# of its CPUs, or could not send at the planned rate, is printed here and
# marked in the report as saturated by the client; one where other
# processes (this machine is shared) took 20 % of a CPU or more on the
# bench's CPUs is printed and marked as disturbed. Before each scenario the
# script waits (up to 2 minutes, 15 over the run; BENCH_QUIET_MAX,
# BENCH_QUIET_BUDGET) for other processes to leave the CPUs alone.
#
# Everything runs inside a private network namespace (scripts/netns.sh):
# Janus gathers no loopback candidates, so both servers and the client use
# the namespace's veth address 10.77.0.1 for ICE, and HTTP on 127.0.0.1.
#
# Raw results (one KEY=VALUE line per measurement) go to
# build/bench/results.txt, the machine and settings to machine.txt, the
# exact commands to commands.txt, server logs to build/bench/.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ -z "${BENCH_IN_NETNS:-}" ]; then
    # Janus, gnuplot, PostgreSQL and the local JSONPlaceholder come with
    # `make bench` (scripts/deps.sh bench); checked here too, so the script
    # also runs on its own.
    ./scripts/deps.sh bench
    for b in build/chatd build/chat-bench; do
        [ -x "$b" ] || { echo "bench.sh: $b missing (run make)" >&2; exit 1; }
    done
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
MACHINE=$OUT/machine.txt
: >"$RESULTS"
: >"$COMMANDS"
: >"$MACHINE"
ICE=${NETNS_ADDR:-10.77.0.1}
JP_PORT=3990
PG_PORT=5499
CHATD_PORT=18700
JANUS_PORT=18788
# Thousands of peers on each side: one socket (or more) each. No core files
# in the checkout (Janus 1.1.2 can crash while it shuts down with thousands
# of peers: a 2 GB core); a server that dies during a scenario is noted.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -c 0 2>/dev/null || true

log() { echo "bench: $*" >&2; }
note() { # a line the report prints above its tables
    log "NOTE: $*"
    echo "note=$*" >>"$MACHINE"
}

# ---- the set: default, quick, then overrides from the environment
if [ -n "${BENCH_QUICK:-}" ]; then
    SMALL=20 SMALL_RATES=1,4 LARGE=60 LARGE_SENDERS=10 LARGE_RATES=1,4 DURATION=2
    CAP_AT=50,100,200 CAP_BUDGET=60 CAP_HOLD=3
    SEED_SIZES=10,20,40 SEED_RESOLUTION=5 SEED_DURATION=5 SEED_BUDGET=60
else
    SMALL=100 SMALL_RATES=0.5,1,2,4,8 LARGE=500 LARGE_SENDERS=50 LARGE_RATES=0.25,0.5,1,2
    DURATION=4
    CAP_AT=500,1000,2000,3000,5000,7500,10000 CAP_BUDGET=420 CAP_HOLD=15
    SEED_SIZES=100,200,300,400,500,600,800,1000 SEED_RESOLUTION=25 SEED_DURATION=15
    SEED_BUDGET=240
fi
OVERRIDDEN=""
for v in SMALL SMALL_RATES LARGE LARGE_SENDERS LARGE_RATES DURATION CAP_AT CAP_BUDGET CAP_HOLD \
    SEED_SIZES SEED_RESOLUTION SEED_DURATION SEED_BUDGET; do
    eval "o=\${BENCH_$v:-}"
    if [ -n "$o" ]; then
        eval "$v=\$o"
        OVERRIDDEN="$OVERRIDDEN $v=$o"
    fi
done
# Before each scenario, wait up to QUIET_MAX s (QUIET_BUDGET s over the
# whole run) for other processes to leave the CPUs alone.
if [ -n "${BENCH_QUICK:-}" ]; then QUIET_MAX=10 QUIET_LEFT=60; else QUIET_MAX=120 QUIET_LEFT=900; fi
QUIET_MAX=${BENCH_QUIET_MAX:-$QUIET_MAX}
QUIET_LEFT=${BENCH_QUIET_BUDGET:-$QUIET_LEFT}
QUIET_WAITED=0
SERVERS=${BENCH_SERVERS:-chatd chatd-nice janus-loops janus}
[ "$SERVERS" = "chatd chatd-nice janus-loops janus" ] || OVERRIDDEN="$OVERRIDDEN SERVERS=$SERVERS"
JANUS_LOOPS=${BENCH_JANUS_LOOPS:-2}

# ---- CPU placement: the server on one CPU, chat-bench on the others.
# A CPU list as taskset prints it ("0-3,6") becomes one CPU per line.
expand_cpus() {
    echo "$1" | tr ',' '\n' | awk -F- 'NF == 2 { for (i = $1; i <= $2; i++) print i; next } NF == 1 && $1 != "" { print $1 }'
}
ALLOWED=$(taskset -cp $$ | sed 's/.*: *//')
CPU_LIST=$(expand_cpus "$ALLOWED")
N_CPUS=$(echo "$CPU_LIST" | wc -l)
if [ "$N_CPUS" -ge 2 ] || [ -n "${BENCH_SERVER_CPUS:-}" ]; then
    SERVER_CPUS=${BENCH_SERVER_CPUS:-$(echo "$CPU_LIST" | head -n 1)}
    CLIENT_CPUS=${BENCH_CLIENT_CPUS:-$(echo "$CPU_LIST" | tail -n +2 | paste -sd, -)}
    ON_SERVER="taskset -c $SERVER_CPUS"
    ON_CLIENT="taskset -c $CLIENT_CPUS"
    SERVER_N=$(expand_cpus "$SERVER_CPUS" | wc -l)
    CLIENT_N=$(expand_cpus "$CLIENT_CPUS" | wc -l)
else
    SERVER_CPUS=$ALLOWED CLIENT_CPUS=$ALLOWED ON_SERVER="" ON_CLIENT="" SERVER_N=1 CLIENT_N=1
    note "one CPU only: server and client share it (no pinning); client saturation is likely"
fi
CHATD_LOOPS=$SERVER_N   # one event loop per server CPU
CLIENT_LOOPS=$CLIENT_N  # and per client CPU

# ---- chatd's transport flag: --rtc-port arrives with issue 10.
if build/chatd --help 2>/dev/null | grep -q -- '--rtc-port'; then
    CHATD_RTC_PORT=yes
    CHATD_TRANSPORT=mux
else
    CHATD_RTC_PORT=no
    CHATD_TRANSPORT=nice
    note "this chatd has no --rtc-port: its default transport is still libnice per peer, so the chatd rows are that transport (chat-bench --transport nice) and the chatd --rtc-port 0 rows are skipped"
fi

cleanup() {
    [ -n "${CHATD_PID:-}" ] && kill "$CHATD_PID" 2>/dev/null || true
    scripts/janus.sh stop "$OUT/janus" 2>/dev/null || true
    scripts/jsonplaceholder.sh stop "$JP_PORT" >/dev/null 2>&1 || true
    scripts/pg.sh stop "$OUT/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

# Runs chat-bench on the client CPUs, keeping the exact command and the
# result lines, and says when the client, not the server, was the limit.
bench() {
    echo "$ON_CLIENT build/chat-bench --loops $CLIENT_LOOPS $*" >>"$COMMANDS"
    log "chat-bench $*"
    rc=0
    $ON_CLIENT build/chat-bench --loops "$CLIENT_LOOPS" "$@" >"$OUT/last.txt" || rc=$?
    [ $rc -eq 0 ] || log "chat-bench exit $rc (failures kept in the results)"
    cat "$OUT/last.txt" >>"$RESULTS"
    cat "$OUT/last.txt"
    awk '/^scenario=(fanout|seed|capacity) / {
        delete v
        for (i = 1; i <= NF; i++) { p = index($i, "="); v[substr($i, 1, p - 1)] = substr($i, p + 1) }
        cpu = v["scenario"] == "capacity" ? v["client_idle_cpu_pct"] : v["client_cpu_pct"]
        what = v["scenario"] " " v["tag"] " peers=" v["peers"] (v["rate"] != "" ? " rate=" v["rate"] : "")
        if (cpu != "" && cpu + 0 >= 90 * v["client_cpus"])
            printf "bench: CLIENT SATURATED: %s: client CPU %s%% of %s CPU(s)\n", what, cpu, v["client_cpus"]
        else if (v["planned"] != "" && v["sent"] + 0 < 0.95 * v["planned"])
            printf "bench: CLIENT SATURATED: %s: sent %s of %s planned posts\n", what, v["sent"], v["planned"]
        else if (v["late_sends"] + 0 > 0.05 * v["sent"])
            printf "bench: CLIENT SATURATED: %s: %s of %s posts sent over 20 ms late\n", what, v["late_sends"], v["sent"]
        if (v["others_cpu_pct"] + 0 >= 20 || v["steal_pct"] + 0 >= 5)
            printf "bench: DISTURBED: %s: other processes took %s%% of a CPU on the bench CPUs (steal %s%%)\n", what, v["others_cpu_pct"], v["steal_pct"]
    }' "$OUT/last.txt" >&2
}

start_chatd() { # NAME EXTRA-FLAGS...
    name=$1
    shift
    rm -rf "$OUT/chatd-$name"
    mkdir -p "$OUT/chatd-$name"
    set -- --listen "127.0.0.1:$CHATD_PORT" --ice-address "$ICE" --api-url "$JP_URL" \
        --data-dir "$OUT/chatd-$name" --draw-backoff-ms 0 --auto-post-max-ms 3600000 \
        --post-rate 1000000 --offer-rate 1000000 --loops "$CHATD_LOOPS" --log-level warn "$@"
    echo "$ON_SERVER build/chatd $*" >>"$COMMANDS"
    $ON_SERVER build/chatd "$@" >"$OUT/chatd-$name.out" 2>"$OUT/chatd-$name.log" &
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
    kill "$CHATD_PID" 2>/dev/null || true
    wait "$CHATD_PID" || true
    CHATD_PID=""
}

metric() { # NAME: one value from chatd's /metrics
    curl -sf "http://127.0.0.1:$CHATD_PORT/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

# A fresh server of configuration TAG; sets SERVER_PID, TARGET, URL and
# TRANSPORT (chat-bench's --transport).
start_server() { # TAG
    case "$1" in
    chatd)
        start_chatd sqlite
        SERVER_PID=$CHATD_PID TARGET=chatd URL="http://127.0.0.1:$CHATD_PORT/"
        TRANSPORT=$CHATD_TRANSPORT
        ;;
    chatd-nice)
        start_chatd nice --rtc-port 0
        SERVER_PID=$CHATD_PID TARGET=chatd URL="http://127.0.0.1:$CHATD_PORT/" TRANSPORT=nice
        ;;
    janus*)
        loops=""
        [ "$1" = janus-loops ] && loops=$JANUS_LOOPS
        SERVER_PID=$($ON_SERVER scripts/janus.sh start "$OUT/janus" "$JANUS_PORT" t0 $loops)
        echo "$ON_SERVER scripts/janus.sh start build/bench/janus $JANUS_PORT t0 $loops" >>"$COMMANDS"
        TARGET=janus URL="http://127.0.0.1:$JANUS_PORT/janus" TRANSPORT=nice
        ;;
    esac
}

stop_server() { # TAG SCENARIO
    kill -0 "$SERVER_PID" 2>/dev/null || note "$1 exited during $2 (see its log in build/bench)"
    case "$1" in
    chatd*) stop_chatd ;;
    janus*)
        scripts/janus.sh stop "$OUT/janus"
        cp "$OUT/janus/janus.jcfg" "$OUT/$1.jcfg"
        ;;
    esac
}

# CPU busy time of the whole machine (user, nice, system, steal), in ticks.
cpu_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $9 }' /proc/stat; }

# Waits until the machine is quiet: between scenarios nothing of the bench
# runs (JSONPlaceholder and PostgreSQL idle), so CPU use over 20 % of one
# CPU is another process (a build, a test run) that would disturb the
# measurement. Gives up after QUIET_MAX s, or when QUIET_LEFT is spent.
wait_quiet() { # WHAT
    waited=0
    hz=$(getconf CLK_TCK)
    while :; do
        a=$(cpu_busy_ticks)
        sleep 2
        b=$(cpu_busy_ticks)
        busy=$(((b - a) * 100 / (2 * hz)))
        [ "$busy" -lt 20 ] && break
        if [ $waited -ge "$QUIET_MAX" ] || [ "$QUIET_LEFT" -le 0 ]; then
            log "other processes use $busy% of a CPU before $1; measuring anyway (rows marked)"
            break
        fi
        [ $waited -eq 0 ] && log "other processes use $busy% of a CPU before $1: waiting (up to $QUIET_MAX s)"
        sleep 3
        waited=$((waited + 5))
        QUIET_LEFT=$((QUIET_LEFT - 5))
    done
    QUIET_WAITED=$((QUIET_WAITED + waited))
}

scenario() { # TAG SCENARIO: one scenario on a fresh server process
    tag=$1 what=$2
    wait_quiet "$tag $what"
    start_server "$tag"
    set -- --target "$TARGET" --url "$URL" --server-pid "$SERVER_PID" --tag "$tag" \
        --ice-address "$ICE" --transport "$TRANSPORT"
    case "$what" in
    fanout-small)
        bench "$@" --scenario fanout --peers "$SMALL" --rates "$SMALL_RATES" --duration "$DURATION" --half
        ;;
    fanout-large)
        bench "$@" --scenario fanout --peers "$LARGE" --senders "$LARGE_SENDERS" \
            --rates "$LARGE_RATES" --duration "$DURATION" --half
        ;;
    capacity)
        # chatd: rooms of CAP_ROOM, since a join's presence goes to everyone
        # in its room (10,000 in one room is 50 million presence frames, for
        # any server); TextRoom's rooms must exist beforehand, so Janus keeps
        # one room (it stops near 1,000 peers either way).
        rooms=""
        [ "$TARGET" = chatd ] && rooms="--room-size $CAP_ROOM"
        bench "$@" --scenario capacity --at "$CAP_AT" --budget "$CAP_BUDGET" --hold "$CAP_HOLD" \
            --concurrency 8 $rooms
        ;;
    seed)
        bench "$@" --scenario seed --sizes "$SEED_SIZES" --resolution "$SEED_RESOLUTION" \
            --duration "$SEED_DURATION" --budget "$SEED_BUDGET" --interval-ms 10000 --p99-ms 100
        ;;
    esac
    stop_server "$tag" "$what"
}

CAP_ROOM=${CAP_ROOM:-100}
T0=$(date +%s)
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "cores=$(nproc)"
    echo "memory=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel=$(uname -r)"
    echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "janus=$(dpkg-query -W -f='${Version}' janus)"
    echo "openssl=$(openssl version)"
    echo "chatd_commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src tools 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "server_cpus=$SERVER_CPUS"
    echo "client_cpus=$CLIENT_CPUS"
    echo "pinning=${ON_SERVER:+taskset}"
    echo "chatd_loops=$CHATD_LOOPS"
    echo "client_loops=$CLIENT_LOOPS"
    echo "janus_loops=$JANUS_LOOPS"
    echo "chatd_rtc_port=$CHATD_RTC_PORT"
    echo "chatd_transport=$CHATD_TRANSPORT"
    echo "quick=${BENCH_QUICK:+yes}"
    echo "overrides=$OVERRIDDEN"
    echo "set=SMALL=$SMALL SMALL_RATES=$SMALL_RATES LARGE=$LARGE LARGE_SENDERS=$LARGE_SENDERS LARGE_RATES=$LARGE_RATES DURATION=$DURATION CAP_AT=$CAP_AT CAP_BUDGET=$CAP_BUDGET CAP_HOLD=$CAP_HOLD SEED_SIZES=$SEED_SIZES SEED_RESOLUTION=$SEED_RESOLUTION SEED_DURATION=$SEED_DURATION SEED_BUDGET=$SEED_BUDGET"
} >>"$MACHINE"
log "server on CPU $SERVER_CPUS (chatd --loops $CHATD_LOOPS, Janus event_loops $JANUS_LOOPS), chat-bench on CPU $CLIENT_CPUS"

# The helpers run on the client's CPUs: the server's CPU is the server's.
JP_URL=$($ON_CLIENT scripts/jsonplaceholder.sh start "$JP_PORT")
PG_URL=$($ON_CLIENT scripts/pg.sh start "$OUT/pg" "$PG_PORT")
echo "$ON_CLIENT scripts/jsonplaceholder.sh start $JP_PORT" >>"$COMMANDS"
echo "$ON_CLIENT scripts/pg.sh start build/bench/pg $PG_PORT" >>"$COMMANDS"

for s in $SERVERS; do
    t=$(date +%s)
    case "$s" in
    chatd-nice)
        [ "$CHATD_RTC_PORT" = yes ] || { log "chatd-nice skipped (no --rtc-port)"; continue; }
        list="fanout-small fanout-large capacity seed"
        ;;
    chatd | janus-loops) list="fanout-small fanout-large capacity seed" ;;
    janus) list="fanout-small fanout-large" ;;
    *)
        log "unknown server $s"
        exit 2
        ;;
    esac
    log "$s"
    for sc in $list; do
        scenario "$s" "$sc"
    done
    echo "seconds_$s=$(($(date +%s) - t))" >>"$MACHINE"
done

# db: log rows per second and write lag, SQLite then PostgreSQL, under the
# same fan-out (every delivered message is one row).
case " $SERVERS " in *" chatd "*)
    t=$(date +%s)
    for db in sqlite postgres; do
        wait_quiet "db $db"
        if [ "$db" = sqlite ]; then start_chatd db-sqlite; else start_chatd db-pg --database-url "$PG_URL"; fi
        rows0=$(metric chatd_db_rows_written_total)
        s0=$(date +%s.%N)
        bench --target chatd --url "http://127.0.0.1:$CHATD_PORT/" --server-pid "$CHATD_PID" \
            --tag "db-$db" --ice-address "$ICE" --transport "$CHATD_TRANSPORT" --scenario fanout \
            --peers "$SMALL" --senders 50 --rates 4 --duration "$DURATION" >/dev/null
        rows1=$(metric chatd_db_rows_written_total)
        s1=$(date +%s.%N)
        lag=$(metric chatd_db_write_latency_avg_seconds)
        depth=$(metric chatd_db_queue_depth)
        echo "scenario=db target=chatd tag=db-$db rows=$((${rows1:-0} - ${rows0:-0})) seconds=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.2f", b - a }') write_latency_avg_s=${lag:-nan} queue_depth_after=${depth:-nan}" |
            tee -a "$RESULTS"
        stop_chatd
    done
    echo "seconds_db=$(($(date +%s) - t))" >>"$MACHINE"
    ;;
esac

# jwt: chatd's signer and verifier against OpenSSL's own ECDSA P-256 speed,
# each on the server's CPU.
echo "$ON_SERVER build/chat-bench --scenario jwt --duration 3" >>"$COMMANDS"
$ON_SERVER build/chat-bench --scenario jwt --duration 3 | tee -a "$RESULTS"
echo "$ON_SERVER openssl speed -seconds 3 ecdsap256" >>"$COMMANDS"
$ON_SERVER openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {
    printf "scenario=openssl target=openssl sign_per_s=%s verify_per_s=%s\n", $(NF-1), $NF }' |
    tee -a "$RESULTS"

echo "quiet_waited_s=$QUIET_WAITED" >>"$MACHINE"
echo "bench_seconds=$(($(date +%s) - T0))" >>"$MACHINE"
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$MACHINE"
log "done in $(($(date +%s) - T0)) s; writing the report"

DOCS=$ROOT/docs
if [ -z "${BENCH_DOCS:-}" ] && { [ -n "${BENCH_QUICK:-}" ] || [ -n "$OVERRIDDEN" ]; }; then
    DOCS=$OUT
fi
python3 scripts/bench-report.py "$OUT" "$DOCS"
