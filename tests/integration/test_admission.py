#!/usr/bin/python3
"""Integration: admission control in front of POST /api/rtc and the HTTP
limits (issue 9): the per-address offer rate (429 + Retry-After), the cap on
peers still being set up and their setup timeout, the cap on remote
candidates, a bad offer leaving no room behind, and the per-address HTTP
connection limit. Each test starts its own chatd; "another address" is
127.0.0.2, which reaches chatd on 127.0.0.1 over loopback.

    /usr/bin/python3 tests/integration/test_admission.py [TEST...]
"""

import http.client
import json
import os
import re
import select
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Chatd, check, run, start_chatd, test, url_port, wait_until  # noqa: E402
import harness  # noqa: E402

RELAY = ("--mode", "relay")
OFFER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus", "sdp",
                     "browser_offer.sdp")
SDP = {"Content-Type": "application/sdp"}


def good_offer(candidates=None):
    with open(OFFER, "rb") as f:
        text = f.read().decode()
    if candidates is not None:
        text = re.sub(r"a=candidate:[^\n]*\n", "", text)
        text = text.replace("a=ice-ufrag:", "".join(
            f"a=candidate:{i + 1} 1 udp 2113937151 127.0.0.1 {port} typ host\n"
            for i, port in enumerate(candidates)) + "a=ice-ufrag:")
    return text.encode()


def post(d, path, body, source="127.0.0.1"):
    """POST from a chosen local address: (status, headers, body)."""
    c = http.client.HTTPConnection("127.0.0.1", url_port(d.url), timeout=10,
                                   source_address=(source, 0))
    try:
        c.request("POST", path, body=body, headers=SDP)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def code_of(body):
    return json.loads(body)["error"]["code"]


@test
def offer_rate_is_per_address_with_retry_after():
    d = Chatd("rate", *RELAY, env={"CHATD_OFFER_RATE": "2"})  # burst 8
    statuses = [post(d, "/api/rtc", b"x")[0] for _ in range(8)]
    check(statuses == [400] * 8, f"the burst is served (bad offers get 400): {statuses}")
    s, h, b = post(d, "/api/rtc", b"x")
    check(s == 429 and code_of(b) == "RATE_LIMITED", f"over the rate: {s} {b}")
    check(int(h.get("retry-after", "0")) >= 1, f"Retry-After in seconds: {h}")
    s, _, b = post(d, "/api/rtc", b"x", source="127.0.0.2")
    check(s == 400, f"another address is not limited: {s} {b}")
    m = d.metrics()
    check(m['chatd_offers_refused_total{reason="rate"}'] == 1, f"counted: {m}")
    time.sleep(1.2)
    s, _, _ = post(d, "/api/rtc", b"x")
    check(s == 400, f"the bucket refills: {s}")
    check(d.stop() == 0, "chatd exits 0")


@test
def pending_peers_are_capped_and_time_out():
    d = Chatd("pending", *RELAY, "--max-pending", "2", "--setup-timeout", "1")
    offer = good_offer()  # its candidates lead nowhere: the peers stay pending
    for i in range(2):
        s, _, b = post(d, "/api/rtc", offer)
        check(s == 201, f"offer {i}: {s} {b}")
    s, h, b = post(d, "/api/rtc", offer, source="127.0.0.2")
    check(s == 503 and code_of(b) == "AT_CAPACITY", f"third pending peer refused: {s} {b}")
    check(d.metrics()["chatd_pending_peers"] == 2, "two pending")
    wait_until(lambda: d.metrics()["chatd_peer_objects"] == 0, 10,
               "pending peers closed by --setup-timeout")
    m = d.metrics()
    check(m["chatd_pending_peers"] == 0 and m["chatd_peers"] == 0, f"slots back: {m}")
    s, _, b = post(d, "/api/rtc", offer)
    check(s == 201, f"admitted again once they timed out: {s} {b}")
    check(d.stop() == 0, "chatd exits 0")


@test
def ice_lite_sends_no_checks_at_all():
    """The one-port transport answers checks and sends none: an offer
    cannot aim chatd's packets at any address it lists."""
    socks = []
    for _ in range(14):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        socks.append(u)
    d = Chatd("candidates-lite", *RELAY)
    try:
        s, _, b = post(d, "/api/rtc", good_offer([u.getsockname()[1] for u in socks]))
        check(s == 201 and b"a=ice-lite" in b, f"offer with 14 candidates is answered: {s} {b}")
        r, _, _ = select.select(socks, [], [], 2.0)
        check(not r, f"{len(r)} of 14 candidates got a datagram from an ICE-lite chatd")
        check(d.stop() == 0, "chatd exits 0")
    finally:
        for u in socks:
            u.close()


@test
def at_most_eight_remote_candidates_get_checks():
    socks = []
    for _ in range(14):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        socks.append(u)
    # The v1 transport (a libnice agent per peer) is the one that sends checks.
    d = Chatd("candidates", *RELAY, "--rtc-port", "0")
    try:
        s, _, b = post(d, "/api/rtc", good_offer([u.getsockname()[1] for u in socks]))
        check(s == 201, f"offer with 14 candidates is answered: {s} {b}")
        hit = set()
        deadline = time.time() + 4
        while time.time() < deadline:
            r, _, _ = select.select(socks, [], [], 0.2)
            for u in r:
                u.recvfrom(2048)
                hit.add(u)
        check(0 < len(hit) <= 8, f"checks reached {len(hit)} of 14 candidates (at most 8)")
        check(d.stop() == 0, "chatd exits 0")
    finally:
        for u in socks:
            u.close()


@test
def a_bad_offer_to_a_new_room_leaves_nothing():
    d = start_chatd("bad_rooms")
    for i in range(40):
        s, _, b = post(d, f"/api/rtc?room=r{i}", b"x", source=f"127.0.1.{i + 1}")
        check(s == 400 and code_of(b) == "BAD_SDP", f"bad offer {i}: {s} {b}")
    m = d.metrics()
    check(m["chatd_rooms"] == 0, f"no room left behind: {m['chatd_rooms']}")
    check(d.stop() == 0, "chatd exits 0")


@test
def max_rooms_refuses_a_new_room_not_an_existing_one():
    d = start_chatd("max_rooms", "--max-rooms", "1", "--setup-timeout", "30")
    s, _, b = post(d, "/api/rtc?room=one", good_offer())
    check(s == 201, f"first room: {s} {b}")
    s, _, b = post(d, "/api/rtc?room=two", good_offer())
    check(s == 503 and code_of(b) == "AT_CAPACITY", f"second room refused: {s} {b}")
    s, _, b = post(d, "/api/rtc?room=one", good_offer())
    check(s == 201, f"the existing room still takes sessions: {s} {b}")
    check(d.metrics()["chatd_rooms"] == 1, "one room")
    check(d.stop() == 0, "chatd exits 0")


@test
def idle_connections_from_one_address_do_not_starve_another():
    d = Chatd("per_ip", *RELAY)
    port = url_port(d.url)
    held = []
    try:
        for _ in range(100):
            c = socket.socket()
            c.settimeout(5)
            c.connect(("127.0.0.1", port))
            c.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # headers never end
            held.append(c)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5,
                                       source_address=("127.0.0.2", 0))
        c.request("GET", "/api/health")
        r = c.getresponse()
        check(r.status == 200, f"health from another address: {r.status}")
        c.close()
        # Of the 100 held, libmicrohttpd kept at most the per-address limit.
        time.sleep(0.5)
        closed = 0
        for s in held:
            try:
                s.setblocking(False)
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        check(closed >= 100 - 32, f"connections over the per-address limit closed: {closed}")
    finally:
        for s in held:
            s.close()
    check(d.stop() == 0, "chatd exits 0")


if __name__ == "__main__":
    run(fixtures=[harness.shared_jsonplaceholder()])
