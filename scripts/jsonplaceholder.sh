#!/bin/sh
# jsonplaceholder.sh — a private, real JSONPlaceholder server for tests.
#
#   scripts/jsonplaceholder.sh start PORT [PIDFILE]
#       Starts the npm package `jsonplaceholder` (node_modules/, installed by
#       scripts/deps.sh) on 127.0.0.1:PORT in the background, waits until it
#       answers /users, writes its pid to PIDFILE and prints its base URL
#       (http://127.0.0.1:PORT) on stdout. Exits 1, with the server's log on
#       stderr, if it does not come up within 20 s.
#   scripts/jsonplaceholder.sh stop PORT|PIDFILE
#       Stops the server started for that port (or pid file) and waits for it
#       to exit.
#
# PIDFILE defaults to ${TMPDIR:-/tmp}/chatd-jsonplaceholder-PORT.pid; the log
# goes next to it (.log). JP_PARENT_PID=PID makes the server exit on its own
# once that process is gone (tests set it, so a crashed test leaves no
# server behind).
#
# Why not `node node_modules/jsonplaceholder/index.js` as its README says:
# index.js calls app.listen(PORT), which listens on every interface. We load
# the same app (src/app.js, the same data and routes) and listen on
# 127.0.0.1 only, so test traffic and the server stay on this machine.
# NODE_ENV=production turns off its per-request log. The data: 10 users,
# 100 posts; /users/11 answers 404 with body {}.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
APP="$ROOT/node_modules/jsonplaceholder/src/app.js"

usage() {
    echo "usage: $0 start PORT [PIDFILE] | stop PORT|PIDFILE" >&2
    exit 2
}

is_port() {
    case "$1" in
    '' | *[!0-9]*) return 1 ;;
    *) [ "$1" -ge 1 ] && [ "$1" -le 65535 ] ;;
    esac
}

default_pidfile() { echo "${TMPDIR:-/tmp}/chatd-jsonplaceholder-$1.pid"; }

# Answers 0 once GET /users returns 200.
answers() {
    curl -s -o /dev/null -f --max-time 1 "http://127.0.0.1:$1/users" 2>/dev/null
}

start() {
    port=$1
    pidfile=${2:-$(default_pidfile "$port")}
    log="${pidfile%.pid}.log"
    [ -f "$APP" ] || { echo "jsonplaceholder: $APP missing; run scripts/deps.sh" >&2; exit 1; }
    command -v node >/dev/null 2>&1 || { echo "jsonplaceholder: node not found" >&2; exit 1; }

    PORT=$port NODE_ENV=production JP_PARENT_PID=${JP_PARENT_PID:-} \
        node -e '
const app = require(process.argv[1]);
const port = Number(process.env.PORT);
const server = app.listen(port, "127.0.0.1", () => {
  console.log("JSONPlaceholder listening on http://127.0.0.1:" + port);
});
server.on("error", (e) => { console.error(String(e)); process.exit(1); });
const parent = Number(process.env.JP_PARENT_PID || 0);
if (parent > 0) {
  setInterval(() => {
    try { process.kill(parent, 0); } catch (e) { if (e.code === "ESRCH") process.exit(0); }
  }, 500).unref();
}
for (const s of ["SIGTERM", "SIGINT"]) process.on(s, () => process.exit(0));
' "$APP" >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"

    i=0
    while [ $i -lt 200 ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "jsonplaceholder: server exited while starting (port $port):" >&2
            cat "$log" >&2
            rm -f "$pidfile"
            exit 1
        fi
        # our own server must be the one answering, not an older one
        if grep -qs "listening on" "$log" && answers "$port"; then
            echo "http://127.0.0.1:$port"
            exit 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    echo "jsonplaceholder: no answer on port $port after 20 s:" >&2
    cat "$log" >&2
    kill "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    exit 1
}

stop() {
    if is_port "$1"; then pidfile=$(default_pidfile "$1"); else pidfile=$1; fi
    [ -f "$pidfile" ] || { echo "jsonplaceholder: no pid file $pidfile" >&2; exit 1; }
    pid=$(cat "$pidfile")
    case "$pid" in '' | *[!0-9]*) echo "jsonplaceholder: bad pid file $pidfile" >&2; exit 1 ;; esac
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile" "${pidfile%.pid}.log"
}

[ $# -ge 2 ] || usage
case "$1" in
start)
    is_port "$2" || usage
    start "$2" "${3:-}"
    ;;
stop) stop "$2" ;;
*) usage ;;
esac
