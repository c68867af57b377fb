#!/bin/sh
# Runs the suites (see tests/run.py; make test passes --cov); the last line is "N passed, N failed,
# N skipped". Builds are made by `make test` before this is called.
set -eu
cd "$(dirname "$0")/.."
exec /usr/bin/python3 tests/run.py "$@"
