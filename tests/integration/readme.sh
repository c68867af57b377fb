#!/bin/sh
# readme.sh — the README's "Using it" commands, run as written.
#
#   tests/integration/readme.sh [CASE ...]
#
# Cases (all by default):
#   make_run_then_chat_client   `make run`, then the README's chat-client
#                               line, on one machine
#   make_run_then_web_page      the same `make run`, then the printed URL in
#                               headless Chromium on that machine
#   listen_any_other_machine    `make run ARGS='--listen 0.0.0.0:8080'` on one
#                               host, chat-client --url http://HOST:8080/ on
#                               another
# (the first two share one `make run`; naming either runs both)
#
# The commands are read from README.md, not copied here, so the README
# cannot drift from what works. Each case runs in network namespaces of
# its own (port 8080 and JSONPlaceholder's 3999 are then free whatever else
# runs on the machine, and headless Chromium gathers a candidate); "another
# machine" is a second namespace joined to the first by a veth pair. Prints
# "ok NAME", "FAIL NAME: reason" per case and "N passed, N failed, N
# skipped". Needs root (network namespaces).
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
LOG_DIR="${TEST_LOG_DIR:-build/test-logs}"
mkdir -p "$LOG_DIR"
LOG_DIR=$(cd "$LOG_DIR" && pwd)

# The README's commands: the lines of the "Using it" block.
readme_line() { # PREFIX -> the command, without its trailing comment
    sed -n '/^## Using it/,/^## /p' README.md | sed -n "s|^    \\($1.*\\)|\\1|p" | head -n 1 |
        sed 's/[[:space:]]*#.*$//'
}
RUN_CMD=$(readme_line 'make run')
CLIENT_CMD=$(readme_line 'build/chat-client')
RUN_ANY_CMD=$(sed -n '/^## Using it/,/^## /p' README.md |
    sed -n "s/.*\`\(make run ARGS='--listen 0.0.0.0:8080'\)\`.*/\1/p" | head -n 1)

# --- inside a namespace: one case's steps ---------------------------------

# Starts $1 (a make run command line) in its own process group; waits for
# chatd's "listening on" line. Sets SERVER_PID.
start_server() { # COMMAND LOG
    # A shell ignores SIGINT in what it starts in the background, and the
    # children inherit that: reset it, so Ctrl-C (SIGINT) reaches make run
    # and chatd as it does in a terminal.
    # setsid may fork: the group's id is read from inside it.
    pgid_file=$(mktemp)
    TMPDIR=$(mktemp -d) setsid env --default-signal=INT \
        sh -c 'echo $$ >"$1"; exec sh -c "$2"' sh "$pgid_file" "$1" >"$2" 2>&1 &
    i=0
    while [ ! -s "$pgid_file" ] && [ "$i" -lt 100 ]; do
        i=$((i + 1))
        sleep 0.05
    done
    SERVER_PID=$(cat "$pgid_file")
    rm -f "$pgid_file"
    i=0
    while ! grep -q '^chatd: listening on' "$2"; do
        i=$((i + 1))
        if [ "$i" -gt 600 ] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "make run did not start chatd; its output: $(tail -n 5 "$2" | tr '\n' ' ')"
            return 1
        fi
        sleep 0.2
    done
    # The directory loads right after listening: wait for it, as a person
    # reading the log would.
    i=0
    while ! grep -q 'api: .* is up' "$2"; do
        i=$((i + 1))
        [ "$i" -gt 150 ] && { echo "JSONPlaceholder never came up"; return 1; }
        sleep 0.2
    done
}

# SIGINT to the whole group, as Ctrl-C would: chatd must stop, and with it
# make run and its local JSONPlaceholder. Returns 1 if anything was left.
stop_server() {
    /bin/kill -INT -- "-$SERVER_PID" 2>/dev/null || true
    i=0
    while /bin/kill -0 -- "-$SERVER_PID" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 100 ]; then
            /bin/kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
            echo "make run was still running 10 s after Ctrl-C (SIGINT)"
            return 1
        fi
        sleep 0.1
    done
}

# Types one line into chat-client, waits for it to come back under the
# user's name, then ends the input: chat-client must exit 0.
chat_once() { # COMMAND LOG
    fifo=$(mktemp -u)
    mkfifo "$fifo"
    timeout 30 sh -c "$1" <"$fifo" >"$2.out" 2>"$2" &
    client=$!
    exec 4>"$fifo"
    echo "hello from the README" >&4
    i=0
    while ! grep -q ': hello from the README' "$2.out" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 300 ] || ! kill -0 "$client" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    exec 4>&-
    rm -f "$fifo"
    wait "$client" && rc=0 || rc=$?
    if ! grep -q ': hello from the README' "$2.out"; then
        echo "chat-client did not print its own line back (exit $rc): $(tail -n 3 "$2" | tr '\n' ' ')"
        return 1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "chat-client exited $rc: $(tail -n 3 "$2" | tr '\n' ' ')"
        return 1
    fi
}

# One `make run`, both same-machine checks; prints their result lines.
inner_same_machine() {
    log="$LOG_DIR/readme-same-machine"
    # Not in $(...): start_server sets SERVER_PID for stop_server.
    if ! start_server "$RUN_CMD" "$log.run.log" >"$log.why"; then
        echo "FAIL make_run_then_chat_client: $(cat "$log.why")"
        echo "FAIL make_run_then_web_page: $(cat "$log.why")"
        return 1
    fi
    r=0
    if why=$(chat_once "$CLIENT_CMD" "$log.client.log"); then
        echo "ok make_run_then_chat_client"
    else
        echo "FAIL make_run_then_chat_client: $why"
        r=1
    fi
    url=$(sed -n 's/^chatd: listening on //p' "$log.run.log" | head -n 1)
    if CHATD_URL="$url" node tests/integration/readme_page.mjs >"$log.page.log" 2>&1; then
        echo "ok make_run_then_web_page"
    else
        echo "FAIL make_run_then_web_page: no welcome: $(tail -n 3 "$log.page.log" | tr '\n' ' ')"
        r=1
    fi
    if ! stop_server >"$log.why"; then
        echo "FAIL make_run_then_chat_client: $(cat "$log.why")"
        r=1
    fi
    return $r
}

# --- outside: namespaces around each case ---------------------------------

if [ "${README_CASE_INNER:-}" != "" ]; then
    "inner_$README_CASE_INNER"
    exit $?
fi

# Two namespaces ("server" and "client") joined by a veth pair.
case_listen_any_other_machine() {
    srv="chatd-readme-srv-$$"
    cli="chatd-readme-cli-$$"
    ip netns add "$srv"
    ip netns add "$cli"
    ip link add rs0 netns "$srv" type veth peer name rc0 netns "$cli"
    ip -n "$srv" link set lo up
    ip -n "$cli" link set lo up
    ip -n "$srv" addr add 10.78.0.1/24 dev rs0
    ip -n "$cli" addr add 10.78.0.2/24 dev rc0
    ip -n "$srv" link set rs0 up
    ip -n "$cli" link set rc0 up
    # A veth link carries packets (and libnice lists its address) only once
    # both ends are up: wait for that, as a booted machine would have.
    i=0
    until ip -n "$srv" link show rs0 | grep -q 'state UP' &&
        ip -n "$cli" link show rc0 | grep -q 'state UP'; do
        i=$((i + 1))
        [ "$i" -gt 100 ] && { echo "the veth link did not come up"; return 1; }
        sleep 0.1
    done
    log="$LOG_DIR/readme-other-machine"
    r=0
    SERVER_PID=""
    if start_server "ip netns exec $srv $RUN_ANY_CMD" "$log.run.log"; then
        client=$(echo "$CLIENT_CMD" | sed 's|http://127.0.0.1:8080/|http://10.78.0.1:8080/|')
        chat_once "ip netns exec $cli $client" "$log.client.log" || r=1
    else
        r=1
    fi
    if [ -n "$SERVER_PID" ] && ! stop_server; then
        r=1
    fi
    ip netns del "$cli" 2>/dev/null || true
    ip netns del "$srv" 2>/dev/null || true
    return $r
}

passed=0 failed=0
count() { # the "ok"/"FAIL" lines of one run
    echo "$1"
    passed=$((passed + $(echo "$1" | grep -c '^ok ' || true)))
    failed=$((failed + $(echo "$1" | grep -c '^FAIL ' || true)))
}

for c in "$RUN_CMD" "$CLIENT_CMD" "$RUN_ANY_CMD"; do
    if [ -z "$c" ]; then
        echo "FAIL readme: README.md's 'Using it' section lost a command this suite runs"
        echo "0 passed, 1 failed, 0 skipped"
        exit 1
    fi
done
cases=${*:-make_run_then_chat_client listen_any_other_machine}
same_done=""
for c in $cases; do
    case "$c" in
    make_run_then_chat_client | make_run_then_web_page)
        [ -n "$same_done" ] && continue
        same_done=1
        out=$(README_CASE_INNER=same_machine scripts/netns.sh "$0" 2>&1) || true
        lines=$(echo "$out" | grep -E '^(ok|FAIL) ' || true)
        [ -n "$lines" ] || lines="FAIL make_run_then_chat_client: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
        count "$lines"
        ;;
    listen_any_other_machine)
        if why=$(case_listen_any_other_machine 2>&1); then
            count "ok listen_any_other_machine"
        else
            count "FAIL listen_any_other_machine: $(echo "$why" | tail -n 3 | tr '\n' ' ')"
        fi
        ;;
    *) count "FAIL $c: no such case" ;;
    esac
done
echo "$passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
