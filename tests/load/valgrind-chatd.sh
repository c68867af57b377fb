#!/bin/sh
# Runs chatd ($CHATD_REAL_BIN, default build/chatd) under valgrind's memcheck
# with every argument given; used by tests/load/test_churn.py. exec keeps the
# PID, so the test reads chatd's own /proc/PID/fd and /proc/PID/task.
# Exit status 1 when valgrind found a memory error or a leak (definite,
# indirect or possible; valgrind.supp lists the one known exit-time case).
here=$(dirname "$0")
exec valgrind --leak-check=full --error-exitcode=1 \
    --errors-for-leak-kinds=definite,indirect,possible \
    --show-leak-kinds=definite,indirect,possible \
    --suppressions="$here/valgrind.supp" \
    --num-callers=30 --log-file="${VALGRIND_LOG:-/dev/stderr}" \
    "${CHATD_REAL_BIN:-$here/../../build/chatd}" "$@"
