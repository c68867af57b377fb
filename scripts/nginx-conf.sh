#!/bin/sh
# nginx-conf.sh — an nginx prefix for the front door of a chatd cluster,
# from deploy/nginx/chatd-cluster.conf: what make cluster (scripts/cluster.sh)
# and the cluster suite (tests/cluster/test_cluster.py) both run nginx with.
#
#   scripts/nginx-conf.sh [--plain PORT] [--san ADDR]... DIR LISTEN NODE...
#
# Makes in DIR:
#
#   nginx.conf     the template with @LISTEN@ = LISTEN (e.g. 127.0.0.1:8443),
#                  its "server @NODE@ ..." line once per NODE (a node's
#                  --listen HOST:PORT) and, with --plain PORT (not 0), the
#                  plain-HTTP listener (the line marked @PLAIN@) turned on, on
#                  127.0.0.1:PORT
#   tls/cert.pem   a self-signed certificate (P-256, 365 days, CN 127.0.0.1)
#   tls/key.pem    for IP:127.0.0.1, DNS:localhost and every --san ADDR (an
#                  IP address); kept if both exist already
#   tmp/           nginx's temporary files
#
# and checks the result with nginx -t. Then run, from anywhere:
#
#   nginx -p DIR/ -c DIR/nginx.conf -e DIR/error.log -g 'daemon off;'
#
# Environment: TEMPLATE (default deploy/nginx/chatd-cluster.conf). Exits 1,
# saying why on stderr, when openssl or nginx refuses.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TEMPLATE=${TEMPLATE:-$ROOT/deploy/nginx/chatd-cluster.conf}

die() {
    echo "nginx-conf.sh: $*" >&2
    exit 1
}
usage() {
    echo "usage: $0 [--plain PORT] [--san ADDR]... DIR LISTEN NODE..." >&2
    exit 2
}

PLAIN=0
SAN="IP:127.0.0.1,DNS:localhost"
while [ $# -gt 0 ]; do
    case "$1" in
    --plain) [ $# -ge 2 ] || usage; PLAIN=$2; shift 2 ;;
    --san) [ $# -ge 2 ] || usage; SAN="$SAN,IP:$2"; shift 2 ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
    esac
done
[ $# -ge 3 ] || usage
case "$PLAIN" in '' | *[!0-9]*) usage ;; esac
LISTEN=$2
[ -f "$TEMPLATE" ] || die "$TEMPLATE missing"
mkdir -p "$1/tls" "$1/tmp"
DIR=$(cd "$1" && pwd)
shift 2

if [ ! -s "$DIR/tls/cert.pem" ] || [ ! -s "$DIR/tls/key.pem" ]; then
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -days 365 -subj "/CN=127.0.0.1" -addext "subjectAltName=$SAN" \
        -keyout "$DIR/tls/key.pem" -out "$DIR/tls/cert.pem" 2>"$DIR/openssl.log") ||
        die "openssl could not make the certificate: $(tail -n 3 "$DIR/openssl.log")"
fi

awk -v listen="$LISTEN" -v nodes="$*" -v plain="$PLAIN" '
    /@PLAIN@/ {
        if (plain != 0) { sub(/#listen [^;]*;/, "listen 127.0.0.1:" plain ";") }
        print
        next
    }
    /^[ \t]*server[ \t]+@NODE@/ {
        n = split(nodes, a, " ")
        for (i = 1; i <= n; i++) { line = $0; sub(/@NODE@/, a[i], line); print line }
        next
    }
    /^[ \t]*listen[ \t]+@LISTEN@/ { sub(/@LISTEN@/, listen) }
    { print }
' "$TEMPLATE" >"$DIR/nginx.conf.tmp"
mv "$DIR/nginx.conf.tmp" "$DIR/nginx.conf"

nginx -p "$DIR/" -c "$DIR/nginx.conf" -e "$DIR/error.log" -t -q 2>"$DIR/nginx-test.log" ||
    die "nginx refused $DIR/nginx.conf: $(cat "$DIR/nginx-test.log")"
