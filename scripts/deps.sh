#!/bin/sh
# Installs the Debian and npm packages chatd needs, one set at a time, so
# that a person who only wants to run the server does not download the test
# lab. Does nothing (and says so) when the set is already present.
#
#   scripts/deps.sh run        build and run chatd (make, make run)
#   scripts/deps.sh local-api  the local JSONPlaceholder from npm (Node.js and
#                              the npm package): make run falls back to it when
#                              the public service does not answer
#   scripts/deps.sh cluster    run + NATS, PostgreSQL, nginx (make cluster)
#   scripts/deps.sh bench      run + local-api + Janus, gnuplot, PostgreSQL,
#                              the namespace tools (make bench)
#   scripts/deps.sh test       all of the above + the test tools: Criterion,
#                              clang's fuzzer, gcovr, valgrind, Chromium,
#                              aiortc, Playwright... (make test, make fuzz, ...)
#   scripts/deps.sh [all]      everything (make deps): the same as test
set -eu
cd "$(dirname "$0")/.."

# Building needs the compiler, pkg-config and the -dev libraries chatd links
# (libnats-dev too: chatd links libnats even when it runs as one node);
# python3 embeds web/ into the binary; run.sh asks curl whether the public
# JSONPlaceholder answers, and chatd needs the CA certificates to reach it.
RUN_DEBS="build-essential pkg-config python3 curl ca-certificates
libnice-dev libusrsctp-dev libssl-dev libmicrohttpd-dev libgnutls28-dev libjansson-dev
libcurl4-openssl-dev libpq-dev libsqlite3-dev libglib2.0-dev libnats-dev"
CLUSTER_DEBS="postgresql nats-server nginx openssl iproute2"
BENCH_DEBS="janus gnuplot-nox postgresql iproute2 util-linux"
TEST_DEBS="clang libclang-rt-14-dev libjwt-dev libcriterion-dev gcovr valgrind
sqlite3 chromium python3-aiortc python3-jwt python3-cryptography nftables"

# Debian packaging (make deb: scripts/deb.sh installs these and the
# Build-Depends alone). make test's `package` suite builds and checks the
# .deb, and compares the unit's system call filter with what chatd calls
# (strace): both are in the test set.
PKG_DEBS="debhelper dpkg-dev fakeroot lintian"
TEST_DEBS="$TEST_DEBS $PKG_DEBS strace"

# nginx and nats-server: the project only ever runs its own (scripts/
# cluster.sh: nginx -p PREFIX -c CONF -e LOG -g 'daemon off;' with its pid,
# logs and temporary files under PREFIX; nats-server with its flags and data
# folder), never /etc/nginx, /etc/nats-server.conf or the system's services.
# Where an init system runs services, Debian's packages start them on
# install (nginx on port 80, nats-server on 127.0.0.1:4222 without
# JetStream); they are left as they are: our ports (8443, 8088, 4322, ...)
# are others, so they neither serve nor block anything of ours.

set_name=${1:-all}
case "$set_name" in
run) debs=$RUN_DEBS npm_set="" ;;
local-api) debs="" npm_set=api ;;
cluster) debs="$RUN_DEBS $CLUSTER_DEBS" npm_set="" ;;
bench) debs="$RUN_DEBS $BENCH_DEBS" npm_set=api ;;
test | all) debs="$RUN_DEBS $CLUSTER_DEBS $BENCH_DEBS $TEST_DEBS" npm_set=all ;;
*)
    echo "usage: $0 [run|local-api|cluster|bench|test|all]" >&2
    exit 2
    ;;
esac

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
updated=0
apt_install() {
    [ "$updated" -eq 1 ] || $SUDO apt-get update -q
    updated=1
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@"
}

missing=""
for p in $debs; do
    case " $missing " in *" $p "*) continue ;; esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "deps ($set_name): installing Debian packages:$missing"
    # shellcheck disable=SC2086 # one word a package
    apt_install $missing
    case " $missing " in
    *" nginx "* | *" nats-server "*)
        for svc in nginx nats-server; do
            if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
                echo "deps: note: the $svc package started the system's $svc service;" \
                    "chatd's scripts never use it ('systemctl disable --now $svc' stops it)"
            fi
        done
        ;;
    esac
elif [ -n "$debs" ]; then
    echo "deps ($set_name): Debian packages present"
fi

[ -n "$npm_set" ] || exit 0

# Node.js and npm come with the machine (or from Debian when absent).
if ! command -v npm >/dev/null 2>&1; then
    echo "deps ($set_name): installing Debian packages: nodejs npm"
    apt_install nodejs npm
fi

# package.json: jsonplaceholder is a dependency, playwright-core (the test
# suites' Chromium driver) a devDependency that only the test set installs.
if [ "$npm_set" = api ]; then
    if [ -f node_modules/jsonplaceholder/package.json ]; then
        echo "deps ($set_name): npm package present (jsonplaceholder)"
    else
        echo "deps ($set_name): installing the npm package jsonplaceholder"
        npm install --omit=dev --no-package-lock --no-audit --no-fund --loglevel=error
    fi
    exit 0
fi
need_npm=0
for m in jsonplaceholder playwright-core; do
    [ -f "node_modules/$m/package.json" ] || need_npm=1
done
if [ "$need_npm" -eq 1 ]; then
    echo "deps ($set_name): installing npm packages (jsonplaceholder, playwright-core)"
    npm install --include=dev --no-package-lock --no-audit --no-fund --loglevel=error
else
    echo "deps ($set_name): npm packages present"
fi
