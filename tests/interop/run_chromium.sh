#!/bin/sh
# run_chromium.sh — the Chromium interop test (tests/interop/test_chromium.mjs)
# inside a private network namespace (scripts/netns.sh), where headless
# Chromium gathers a host candidate on 10.77.0.1 and no packet leaves.
#
#   tests/interop/run_chromium.sh [TEST_NAME...]
#   CHATD_BIN=build/asan/chatd tests/interop/run_chromium.sh
#
# Environment: CHATD_BIN, CHAT_CLIENT_BIN, CHATD_LOG_LEVEL, TEST_LOG_DIR,
# ARTIFACTS_DIR (see the .mjs). Needs root for the namespace. Ends with the
# test's "N passed, N failed, N skipped" line and exit status.
set -eu
cd "$(dirname "$0")/../.."

if [ -z "${CHATD_INTEROP_IN_NETNS:-}" ]; then
    CHATD_INTEROP_IN_NETNS=1 exec scripts/netns.sh "$0" "$@"
fi

export ICE_ADDRESS="${NETNS_ADDR:-10.77.0.1}"
exec node tests/interop/test_chromium.mjs "$@"
