#!/bin/sh
# testca.sh — a throwaway certificate authority for the HTTPS tests, made
# with the openssl command (EC P-256, valid 2 days, never trusted anywhere
# but by the test that made it).
#
#   tests/lib/testca.sh DIR                  # DIR/ca.pem, DIR/ca.key
#   tests/lib/testca.sh DIR NAME [IP...]     # DIR/NAME.pem, DIR/NAME.key:
#                                            # a server certificate, CN=NAME,
#                                            # signed by DIR's CA, SAN IP:127.0.0.1
#                                            # and each IP given
#
# Each server certificate gets a fresh random serial, so two made with the
# same NAME differ. Prints nothing; exits non-zero when openssl fails.
set -eu

if [ "$#" -lt 1 ]; then
    echo "usage: $0 DIR [NAME [IP...]]" >&2
    exit 2
fi
dir=$1
shift
mkdir -p "$dir"
if [ "$#" -eq 0 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 2 -subj "/CN=chatd test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    exit 0
fi
name=$1
shift
san="IP:127.0.0.1"
for ip in "$@"; do
    san="$san,IP:$ip"
done
ext="$dir/$name.ext"
printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$ext"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/$name.key" \
    -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 2 -extfile "$ext" \
    -out "$dir/$name.pem" 2>/dev/null
rm -f "$dir/$name.csr" "$dir/$name.ext"
