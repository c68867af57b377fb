#!/bin/sh
# make run: start chatd for a person to use. Uses the public JSONPlaceholder
# when it answers, otherwise starts the real server from npm locally and
# says which. Extra arguments go to chatd (e.g. --listen 0.0.0.0:8080).
set -eu
cd "$(dirname "$0")/.."
PUBLIC=https://jsonplaceholder.typicode.com
if [ -n "${JSONPLACEHOLDER_URL:-}" ]; then
    echo "run: JSONPlaceholder from JSONPLACEHOLDER_URL: $JSONPLACEHOLDER_URL"
elif curl -fsS --max-time 4 "$PUBLIC/users/1" >/dev/null 2>&1; then
    JSONPLACEHOLDER_URL=$PUBLIC
    echo "run: JSONPlaceholder: the public service ($PUBLIC)"
else
    port=${JSONPLACEHOLDER_PORT:-3999}
    # Node.js and the npm package, only now that they are needed
    ./scripts/deps.sh local-api
    JP_PARENT_PID=$$
    export JP_PARENT_PID
    JSONPLACEHOLDER_URL=$(./scripts/jsonplaceholder.sh start "$port")
    trap './scripts/jsonplaceholder.sh stop "$port" >/dev/null 2>&1 || true' EXIT INT TERM
    echo "run: the public JSONPlaceholder is not reachable; using the local server from npm at $JSONPLACEHOLDER_URL"
fi
export JSONPLACEHOLDER_URL
echo "run: open the printed URL in a browser; Ctrl-C stops chatd"
build/chatd "$@"
