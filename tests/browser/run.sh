#!/bin/sh
# run.sh — the browser suite end to end, inside a private network namespace
# (scripts/netns.sh): a local JSONPlaceholder (scripts/jsonplaceholder.sh),
# the real chatd, and headless Chromium running each of BROWSER_TESTS in
# turn against that one chatd: tests/browser/web.test.mjs (the client's
# basics) and tests/browser/rooms.test.mjs (rooms, whispers, owners,
# announcements, search, reconnecting: PROTOCOL.md section 10); then a
# second chatd serving HTTPS with a test CA's certificate, and
# tests/browser/tls.test.mjs against it (BROWSER_TLS=0 leaves it out).
#
#   tests/browser/run.sh                              # against build/chatd
#   CHATD_BIN=build/asan/chatd tests/browser/run.sh   # the ASan+UBSan build
#
# Environment:
#   CHATD_BIN        chatd binary (build/chatd)
#   ARTIFACTS_DIR    screenshots and chatd's log go here (build/artifacts)
#   CHATD_LOG_LEVEL  passed to chatd (info)
#   CHATD_AUTO_POST_TIMEOUT_MS, CHATD_STEP_TIMEOUT_MS  passed to the tests
#   BROWSER_TESTS    test files to run (both of the above)
#   CHATD_ADMIN_KEY  chatd's --admin-key, also given to the tests (a fixed
#                    test key; set it empty to run chatd without one)
#
# chatd listens on 127.0.0.1:0 (a free port; its URL is read from its
# "chatd: listening on URL" line) and offers ICE host candidates on the
# namespace's veth address (NETNS_ADDR, 10.77.0.1), where Chromium gathers
# its own. Auto posts come every 0–2 s. Ends with one
# "N passed, N failed, N skipped" line, the sum of the files' own; exits
# non-zero on any failure.
# Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN) for the namespace.
set -eu
cd "$(dirname "$0")/../.."

if [ -z "${CHATD_BROWSER_IN_NETNS:-}" ]; then
    CHATD_BROWSER_IN_NETNS=1 exec scripts/netns.sh "$0" "$@"
fi

CHATD_BIN="${CHATD_BIN:-build/chatd}"
ARTIFACTS_DIR="${ARTIFACTS_DIR:-build/artifacts}"
export ARTIFACTS_DIR
mkdir -p "$ARTIFACTS_DIR"
CHATD_LOG="$ARTIFACTS_DIR/chatd-browser.log"
TLS_LOG="$ARTIFACTS_DIR/chatd-browser-tls.log"

fail_setup() { # MESSAGE
    echo "browser: $1" >&2
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
}

if [ ! -x "$CHATD_BIN" ]; then
    fail_setup "$CHATD_BIN not built (run make)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chatd-browser.XXXXXX")
# The namespace is private, so a fixed port cannot collide with anything
# outside it; the pid file lives in WORK so parallel runs do not share one.
API_PORT=3999
API_PID="$WORK/jsonplaceholder.pid"
CHATD_PID="" TLS_PID=""
cleanup() {
    for pid in $CHATD_PID $TLS_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [ -f "$API_PID" ] && scripts/jsonplaceholder.sh stop "$API_PID" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

API_URL=$(JP_PARENT_PID=$$ scripts/jsonplaceholder.sh start "$API_PORT" "$API_PID") ||
    fail_setup "JSONPlaceholder did not start"

# With an admin key, creating a room takes it, and announcements to every
# room are possible: rooms.test.mjs tests both.
CHATD_ADMIN_KEY="${CHATD_ADMIN_KEY-browser-admin-$$}"
export CHATD_ADMIN_KEY
# launch NAME ARGS...: starts chatd with ARGS (stdout through a fifo, logs to
# $ARTIFACTS_DIR/NAME.log); sets LAUNCHED_PID and LAUNCHED_URL, read from
# its "chatd: listening on URL" line.
launch() {
    name=$1
    shift
    log="$ARTIFACTS_DIR/$name.log"
    mkfifo "$WORK/$name.out"
    "$CHATD_BIN" --listen 127.0.0.1:0 --ice-address "${NETNS_ADDR:-10.77.0.1}" \
        --api-url "$API_URL" --data-dir "$WORK/$name-data" --auto-post-max-ms 2000 \
        --log-level "${CHATD_LOG_LEVEL:-info}" "$@" \
        >"$WORK/$name.out" 2>"$log" &
    LAUNCHED_PID=$!
    # chatd's stdout: the first line to match gives the URL; the rest is
    # copied into the log so that the fifo never fills up.
    LAUNCHED_URL=""
    exec 3<"$WORK/$name.out"
    while IFS= read -r line <&3; do
        echo "$line" >>"$log"
        case "$line" in
        "chatd: listening on "*)
            LAUNCHED_URL=${line#chatd: listening on }
            break
            ;;
        esac
    done
    [ -n "$LAUNCHED_URL" ] || fail_setup "chatd exited before listening (log: $log)"
    cat <&3 >>"$log" &
    exec 3<&-
}

launch chatd-browser
CHATD_PID=$LAUNCHED_PID
URL=$LAUNCHED_URL
echo "browser: chatd $CHATD_BIN on $URL, JSONPlaceholder on $API_URL" >&2

status=0 p=0 f=0 s=0
# run_test FILE [VAR=VALUE...]: one test file with that environment; its
# lines go through now, its counts are added to p, f and s.
run_test() {
    t=$1
    shift
    rc=0
    env "$@" node "$t" >"$WORK/test.out" || rc=$?
    [ "$rc" -eq 0 ] || status=$rc
    # Everything but the count line goes through now; the summed count last.
    grep -Ev '^[0-9]+ passed, [0-9]+ failed' "$WORK/test.out" || true
    counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$WORK/test.out" | tail -n 1)
    tp=$(echo "$counts" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
    tf=$(echo "$counts" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    ts=$(echo "$counts" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
    p=$((p + ${tp:-0})) f=$((f + ${tf:-0})) s=$((s + ${ts:-0}))
    if [ -z "$counts" ]; then
        echo "browser: $t printed no count line (status $rc)" >&2
        f=$((f + 1))
    fi
}
for t in ${BROWSER_TESTS:-tests/browser/web.test.mjs tests/browser/rooms.test.mjs}; do
    run_test "$t" CHATD_URL="$URL"
done

# HTTPS: a second chatd with a certificate from a test CA made here (SAN
# 127.0.0.1 and the namespace address), and tests/browser/tls.test.mjs with
# Chromium pinned to that certificate's key. BROWSER_TLS=0 skips it.
if [ "${BROWSER_TLS:-1}" != 0 ]; then
    tests/lib/testca.sh "$WORK/tls" || fail_setup "cannot make the test CA (openssl)"
    tests/lib/testca.sh "$WORK/tls" server "${NETNS_ADDR:-10.77.0.1}" ||
        fail_setup "cannot make the test certificate (openssl)"
    SPKI=$(openssl x509 -in "$WORK/tls/server.pem" -pubkey -noout |
        openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)
    launch chatd-browser-tls --tls-cert "$WORK/tls/server.pem" --tls-key "$WORK/tls/server.key"
    TLS_PID=$LAUNCHED_PID
    echo "browser: chatd with TLS on $LAUNCHED_URL" >&2
    run_test tests/browser/tls.test.mjs CHATD_URL="$LAUNCHED_URL" CHATD_TLS_SPKI="$SPKI"
    rc=0
    kill "$TLS_PID" 2>/dev/null || true
    wait "$TLS_PID" 2>/dev/null || rc=$?
    TLS_PID=""
    if [ "$rc" -ne 0 ]; then
        echo "FAIL chatd (TLS): exit status $rc after SIGTERM; see $TLS_LOG"
        f=$((f + 1))
    fi
fi

# A chatd that died during the run (a crash, an ASan report) or that does
# not exit 0 on SIGTERM fails the suite.
rc=0
if ! kill -0 "$CHATD_PID" 2>/dev/null; then
    wait "$CHATD_PID" 2>/dev/null || rc=$?
    echo "FAIL chatd: exited during the run (status $rc); see $CHATD_LOG"
    f=$((f + 1))
else
    kill "$CHATD_PID" 2>/dev/null || true
    wait "$CHATD_PID" 2>/dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "FAIL chatd: exit status $rc after SIGTERM; see $CHATD_LOG"
        f=$((f + 1))
    fi
fi
CHATD_PID=""
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ] && [ "$status" -eq 0 ] || exit 1
exit 0
