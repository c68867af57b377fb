#!/bin/sh
# Runs chatd ($CHATD_REAL_BIN, default build/chatd) under valgrind's memcheck
# with every argument given; used by tests/load/test_churn.py. exec keeps the
# PID, so the test reads chatd's own /proc/PID/fd and /proc/PID/task.
# Exit status 1 when valgrind found an error or a definite/indirect leak.
here=$(dirname "$0")
exec valgrind --leak-check=full --error-exitcode=1 \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect,possible \
    --num-callers=30 --log-file="${VALGRIND_LOG:-/dev/stderr}" \
    "${CHATD_REAL_BIN:-$here/../../build/chatd}" "$@"
