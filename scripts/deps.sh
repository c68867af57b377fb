#!/bin/sh
# Installs every Debian and npm package chatd needs to build, run, test and
# benchmark. Does nothing (and says so) when everything is already present.
set -eu
cd "$(dirname "$0")/.."

DEBS="build-essential pkg-config clang libclang-rt-14-dev
libnice-dev libusrsctp-dev libssl-dev libmicrohttpd-dev libjansson-dev
libjwt-dev libcurl4-openssl-dev libpq-dev libsqlite3-dev libglib2.0-dev
libcriterion-dev gcovr valgrind
postgresql sqlite3 chromium python3 python3-aiortc python3-jwt
python3-cryptography iproute2 util-linux nftables curl janus gnuplot-nox
nats-server libnats-dev nginx openssl"

# Debian packaging (make deb: scripts/deb.sh installs these and the
# Build-Depends alone). make test's `package` suite builds and checks the
# .deb, and compares the unit's system call filter with what chatd calls
# (strace).
# Both belong to the test set: DEBS today, TEST_DEBS once this script
# installs sets (written to work either way).
PKG_DEBS="debhelper dpkg-dev fakeroot lintian"
DEBS="${DEBS:-} $PKG_DEBS strace"
TEST_DEBS="${TEST_DEBS:-} $PKG_DEBS strace"

# nginx and nats-server: the project only ever runs its own (scripts/
# cluster.sh: nginx -p PREFIX -c CONF -e LOG -g 'daemon off;' with its pid,
# logs and temporary files under PREFIX; nats-server with its flags and data
# folder), never /etc/nginx, /etc/nats-server.conf or the system's services.
# Where an init system runs services, Debian's packages start them on
# install (nginx on port 80, nats-server on 127.0.0.1:4222 without
# JetStream); they are left as they are: our ports (8443, 8088, 4322, ...)
# are others, so they neither serve nor block anything of ours.

missing=""
for p in $DEBS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "deps: installing Debian packages:$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing
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
else
    echo "deps: Debian packages present"
fi

# Node.js and npm come with the machine (or from Debian when absent).
if ! command -v npm >/dev/null 2>&1; then
    missing_node="nodejs npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing_node
fi

need_npm=0
for m in jsonplaceholder playwright-core; do
    [ -f "node_modules/$m/package.json" ] || need_npm=1
done
if [ "$need_npm" -eq 1 ]; then
    echo "deps: installing npm packages (jsonplaceholder, playwright-core)"
    npm install --no-package-lock --no-audit --no-fund --loglevel=error
else
    echo "deps: npm packages present"
fi
