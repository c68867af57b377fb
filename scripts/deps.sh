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

# nginx: the project only ever runs its own nginx (scripts/cluster.sh:
# nginx -p PREFIX -c CONF -e LOG -g 'daemon off;', pid, logs and temp files
# under PREFIX, its own ports), never /etc/nginx or the system's service.
# Debian's package may start that service on install (port 80, where an
# init system runs services); it is left as it is: it neither serves nor
# blocks anything of ours.

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
    *" nginx "*)
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
            echo "deps: note: the nginx package started the system's nginx service (port 80);" \
                "chatd never uses it ('systemctl disable --now nginx' stops it)"
        fi
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
