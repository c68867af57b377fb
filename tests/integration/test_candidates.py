#!/usr/bin/python3
"""Which ICE candidates chatd uses, by where the offer comes from.

A client on this machine (its offer reached chatd over loopback) may pair
with chatd on 127.0.0.1: chatd gathers a loopback candidate for it and
checks the offer's loopback candidates. A remote offer gets neither: its
127.0.0.1 candidates would point chatd's connectivity checks at services on
chatd's own machine, and a loopback candidate in its answer is useless to
it. Runs inside scripts/netns.sh (a private namespace whose veth address,
10.77.0.1, stands for "not loopback"), with chatd (relay mode) listening on
every address and no --ice-address.

    /usr/bin/python3 tests/integration/test_candidates.py [TEST...]
"""

import os
import re
import socket
import subprocess
import tempfile
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
if not os.environ.get("CHATD_CANDIDATES_IN_NETNS"):
    env = dict(os.environ, CHATD_CANDIDATES_IN_NETNS="1")
    sys.exit(subprocess.call([os.path.join(ROOT, "scripts", "netns.sh"), sys.executable,
                              os.path.abspath(__file__), *sys.argv[1:]], env=env))

sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from harness import CHATD_BIN, Chatd, check, http, run, test, url_port  # noqa: E402

VETH = os.environ.get("NETNS_ADDR", "10.77.0.1")


def offer_with_candidate(addr, port):
    return ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
            f"a=candidate:1 1 udp 2113937151 {addr} {port} typ host\r\n"
            "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
            "a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:"
            "1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n"
            "a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n")


def stun_requests(sock, seconds):
    """Counts STUN binding requests arriving on sock within `seconds`."""
    n = 0
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return n
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(2048)
        except socket.timeout:
            return n
        if len(data) >= 20 and data[0:2] == b"\x00\x01":
            n += 1


def offer_from(host, port_of_chatd, name):
    """Posts an offer naming a 127.0.0.1 candidate (a socket of this test)
    to chatd at http://HOST:PORT/; returns (answer, STUN requests seen)."""
    trap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trap.bind(("127.0.0.1", 0))
    try:
        status, _, body = http("POST", f"http://{host}:{port_of_chatd}/api/rtc",
                               offer_with_candidate("127.0.0.1", trap.getsockname()[1]).encode(),
                               {"Content-Type": "application/sdp"})
        check(status == 201, f"{name}: offer answered {status}: {body[:200]!r}")
        return body.decode(), stun_requests(trap, 2.0)
    finally:
        trap.close()


def chatd_everywhere(name, *extra):
    return Chatd(name, "--mode", "relay", "--listen", "0.0.0.0:0", *extra, ice=None)


V1 = ("--rtc-port", "0")  # a libnice agent per peer: full ICE, chatd sends checks


@test
def local_offer_pairs_with_loopback():
    c = chatd_everywhere("candidates-local", *V1)
    port = url_port(c.url)
    answer, stun = offer_from("127.0.0.1", port, "local")
    check(" 127.0.0.1 " in answer, f"no loopback candidate for a local client: {answer}")
    check(stun > 0, "chatd sent no check to the local client's loopback candidate")
    c.stop()


@test
def lite_local_offer_gets_loopback_and_no_checks():
    # The one-port transport is ICE-lite: it answers checks and sends none,
    # to any candidate; a client on this machine still gets 127.0.0.1.
    c = chatd_everywhere("candidates-lite-local")
    port = url_port(c.url)
    answer, stun = offer_from("127.0.0.1", port, "local")
    check("a=ice-lite" in answer, f"the answer does not say a=ice-lite: {answer}")
    ports = set(re.findall(r"a=candidate:\S+ 1 udp \d+ \S+ (\d+) typ host", answer))
    check(" 127.0.0.1 " in answer and len(ports) == 1,
          f"no loopback candidate on the one port for a local client: {answer}")
    check(stun == 0, f"an ICE-lite chatd sent {stun} STUN requests")
    c.stop()


@test
def remote_offer_gets_no_loopback_and_sends_none_there():
    c = chatd_everywhere("candidates-remote")
    port = url_port(c.url)
    answer, stun = offer_from(VETH, port, "remote")
    check(" 127.0.0.1 " not in answer, f"a remote client got a loopback candidate: {answer}")
    check(f" {VETH} " in answer, f"no candidate on {VETH}: {answer}")
    check(stun == 0, f"a remote offer made chatd send {stun} STUN requests to 127.0.0.1")
    c.stop()


@test
def remote_offer_loopback_candidate_is_dropped_even_with_a_loopback_address():
    # chatd told to use loopback too: a remote offer's 127.0.0.1 candidate
    # would pair with it, so only the filter keeps the checks away.
    c = Chatd("candidates-explicit", "--mode", "relay", "--listen", "0.0.0.0:0",
              "--ice-address", "127.0.0.1", "--ice-address", VETH, *V1, ice=None)
    port = url_port(c.url)
    _, stun = offer_from(VETH, port, "remote")
    check(stun == 0, f"a remote offer made chatd send {stun} STUN requests to 127.0.0.1")
    _, stun = offer_from("127.0.0.1", port, "local")
    check(stun > 0, "a local offer's loopback candidate was not checked")
    c.stop()


@test
def public_address_is_advertised_for_the_local_one():
    # 1:1 NAT (a cloud machine): the candidate names the public address,
    # on the same one port, and the local one is not advertised.
    for flag, public in (("203.0.113.5", "203.0.113.5"),
                         (f"{VETH}=198.51.100.7", "198.51.100.7")):
        c = chatd_everywhere("candidates-public", "--ice-address", VETH,
                             "--ice-public-address", flag)
        port = url_port(c.url)
        answer, stun = offer_from(VETH, port, "remote")
        check(f" {public} " in answer and f" {VETH} " not in answer,
              f"--ice-public-address {flag}: {answer}")
        check(stun == 0, f"{stun} STUN requests")
        c.stop()
    with tempfile.TemporaryDirectory() as data:
        r = subprocess.run([CHATD_BIN, "--mode", "relay", "--listen", "127.0.0.1:0",
                            "--data-dir", data, "--ice-public-address", "not-an-address"],
                           capture_output=True, text=True, timeout=20)
    check(r.returncode == 2 and "ICE public address 'not-an-address'" in r.stderr,
          f"a bad --ice-public-address: exit {r.returncode}, {r.stderr!r}")



@test
def rtc_port_in_use_is_one_clear_line():
    # No SO_REUSEPORT on this socket: chatd's bind must fail.
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("0.0.0.0", 0))
    port = taken.getsockname()[1]
    try:
        with tempfile.TemporaryDirectory() as data:
            r = subprocess.run([CHATD_BIN, "--mode", "relay", "--listen", "127.0.0.1:0",
                                "--data-dir", data, "--rtc-port", str(port)],
                               capture_output=True, text=True, timeout=20)
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        check(r.returncode == 2 and
              last == f"chatd: UDP port {port} (--rtc-port) is in use by another process",
              f"--rtc-port {port} taken: exit {r.returncode}, {r.stderr!r}")
    finally:
        taken.close()


@test
def a_second_chatd_on_the_same_rtc_port_is_refused():
    # chatd's own sockets share the port among its loops (SO_REUSEPORT),
    # which would let a second chatd of the same user share it too and take
    # part of the first one's traffic: the second must refuse to start.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("0.0.0.0", 0))
    port = probe.getsockname()[1]
    probe.close()
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        first = subprocess.Popen([CHATD_BIN, "--mode", "relay", "--listen", "127.0.0.1:0",
                                  "--data-dir", d1, "--rtc-port", str(port)],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = first.stdout.readline()
            check("listening on" in line, f"the first chatd did not start: {line!r}")
            r = subprocess.run([CHATD_BIN, "--mode", "relay", "--listen", "127.0.0.1:0",
                                "--data-dir", d2, "--rtc-port", str(port)],
                               capture_output=True, text=True, timeout=20)
            last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
            check(r.returncode == 2 and
                  last == f"chatd: UDP port {port} (--rtc-port) is in use by another process",
                  f"a second chatd on --rtc-port {port}: exit {r.returncode}, {r.stderr!r}")
        finally:
            first.terminate()
            first.wait(timeout=20)


if __name__ == "__main__":
    run()
