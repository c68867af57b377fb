#!/bin/sh
# janus.sh — a private Janus (Debian's `janus` package) with only the
# TextRoom plugin and the HTTP transport, for chat-bench.
#
#   scripts/janus.sh start DIR PORT IFACE [EVENT_LOOPS]
#       Writes a config folder in DIR, starts Janus in the background with
#       its HTTP API on 127.0.0.1:PORT/janus and ICE only on interface IFACE
#       (Janus gathers no loopback candidates: run it inside scripts/netns.sh
#       and pass the veth, t0), waits until the API answers, and prints its
#       pid. EVENT_LOOPS (optional) sets janus.jcfg's event_loops; without it
#       Janus uses its default (one thread per handle).
#   scripts/janus.sh stop DIR
#       Stops that Janus (by the pid in DIR/janus.pid) and waits for it.
#
# TextRoom room 1234 ("Bench", no history) is the bench room. Its JSON is
# "compact" instead of the plugin's default "indented": smaller messages,
# the fairer comparison with chatd's compact JSON. Everything else is
# Janus's default. The log is DIR/janus.log.
set -eu

LIB=/usr/lib/x86_64-linux-gnu/janus

usage() {
    echo "usage: $0 start DIR PORT IFACE [EVENT_LOOPS] | stop DIR" >&2
    exit 2
}

# Every .so in a folder except the ones named, as a comma list.
all_but() {
    dir=$1
    shift
    out=""
    for f in "$dir"/*.so; do
        [ -e "$f" ] || continue
        b=$(basename "$f")
        keep=0
        for k in "$@"; do [ "$b" = "$k" ] && keep=1; done
        [ $keep -eq 1 ] && continue
        out="${out:+$out,}$b"
    done
    echo "$out"
}

start() {
    dir=$1 port=$2 iface=$3 loops=${4:-}
    command -v janus >/dev/null 2>&1 || { echo "janus.sh: janus is not installed" >&2; exit 1; }
    mkdir -p "$dir"
    loops_line=""
    [ -n "$loops" ] && loops_line="event_loops = $loops"
    cat >"$dir/janus.jcfg" <<CFG
general: {
    configs_folder = "$dir"
    plugins_folder = "$LIB/plugins"
    transports_folder = "$LIB/transports"
    events_folder = "$LIB/events"
    loggers_folder = "$LIB/loggers"
    debug_level = 3
    $loops_line
}
nat: {
    ice_enforce_list = "$iface"
    ignore_mdns = true
}
plugins: {
    disable = "$(all_but "$LIB/plugins" libjanus_textroom.so)"
}
transports: {
    disable = "$(all_but "$LIB/transports" libjanus_http.so)"
}
events: {
    disable = "$(all_but "$LIB/events")"
}
loggers: {
    disable = "$(all_but "$LIB/loggers")"
}
CFG
    cat >"$dir/janus.transport.http.jcfg" <<CFG
general: {
    json = "compact"
    base_path = "/janus"
    http = true
    port = $port
    ip = "127.0.0.1"
    https = false
}
admin: {
    admin_http = false
    admin_https = false
}
CFG
    cat >"$dir/janus.plugin.textroom.jcfg" <<CFG
general: {
    json = "compact"
}
room-1234: {
    description = "Bench"
    history = 0
}
CFG
    janus -F "$dir" -C "$dir/janus.jcfg" >"$dir/janus.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/janus.pid"
    i=0
    while [ $i -lt 100 ]; do
        if curl -sf -o /dev/null "http://127.0.0.1:$port/janus/info"; then
            echo "$pid"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    echo "janus.sh: Janus did not come up; its log:" >&2
    cat "$dir/janus.log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
}

stop() {
    dir=$1
    [ -f "$dir/janus.pid" ] || return 0
    pid=$(cat "$dir/janus.pid")
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/janus.pid"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
start) [ $# -ge 3 ] || usage; start "$@" ;;
stop) [ $# -eq 1 ] || usage; stop "$1" ;;
*) usage ;;
esac
