#!/bin/sh
# netns.sh — run a command inside a fresh, private network namespace.
#
#   scripts/netns.sh COMMAND [ARGS...]
#
# Headless Chromium gathers no ICE candidate on loopback, and none at all on a
# machine without a default route. This builds the smallest network where it
# does, and from which no packet can leave the machine:
#
#   lo up; veth pair t0 (10.77.0.1/24) <-> t1 (10.77.0.2/24), both ends inside
#   the namespace; default route via 10.77.0.2 on t0.
#
# Chromium then offers a host candidate on 10.77.0.1. Run chatd and the browser
# inside the same namespace (e.g. chatd listening on 127.0.0.1 or 10.77.0.1).
# The namespace disappears when COMMAND exits; its exit status is returned.
# Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN); uses unshare (util-linux)
# and ip (iproute2).
set -eu

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi
for tool in unshare ip; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "netns.sh: '$tool' not found (install util-linux / iproute2)" >&2
        exit 127
    fi
done

# NETNS_ADDR / NETNS_PEER may override the addresses (both in one /24).
ADDR="${NETNS_ADDR:-10.77.0.1}"
PEER="${NETNS_PEER:-10.77.0.2}"
export NETNS_ADDR="$ADDR" NETNS_PEER="$PEER"

exec unshare -n -- sh -eu -c '
    ip link set lo up
    ip link add t0 type veth peer name t1
    ip addr add "$NETNS_ADDR/24" dev t0
    ip addr add "$NETNS_PEER/24" dev t1
    ip link set t0 up
    ip link set t1 up
    ip route add default via "$NETNS_PEER" dev t0
    exec "$@"
' netns.sh "$@"
