#!/usr/bin/python3
"""Integration: ICE-TCP (chatd --ice-tcp-port, RFC 6544 passive candidates,
RFC 4571 framing; src/rtc/icetcp.c) against strangers and with the peers'
own credentials. chatd runs in relay mode; each test starts its own.

- The answer carries a passive TCP candidate next to each UDP one, with a
  lower priority; aiortc (which ignores TCP candidates) still connects and
  talks over UDP.
- A framed check with a peer's credentials is answered over the connection
  (Binding success, XOR-MAPPED-ADDRESS, signed), on whichever loop the
  kernel accepted it (several connections: some are handed to the peer's
  loop); a peer keeps at most 4 connections (a fifth closes the oldest);
  with USE-CANDIDATE the peer's sends move to the connection (framed DTLS
  arrives on it); when it closes, the peer goes back to UDP at its next
  check; the connections close when the peer closes.
- Strangers: a first frame that is garbage, DTLS, a check for an unknown
  ufrag or with the wrong password, or a frame over 2 KiB: chatd closes
  the connection, sends nothing, and counts the reason; a connection silent
  for 5 s is closed; at most 8 strangers per remote address and 256 in all
  (over either, closed at accept and counted).

The STUN messages come from test_mux.py (written independently of
src/rtc/stun.c).

    /usr/bin/python3 tests/integration/test_icetcp.py [TEST...]
"""

import asyncio
import os
import re
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Chatd, Failure, check, free_port, run, test  # noqa: E402

_own = len(harness._tests)
from test_mux import (BINDING_SUCCESS, USE_CANDIDATE, XOR_MAPPED_ADDRESS, ametrics,  # noqa: E402
                      attr, check_reply_signed, check_request, dtls_record, drops, pair,
                      parse_stun, still_talking, xor_mapped)

del harness._tests[_own:]  # test_mux's own tests are not this file's

RELAY = ("--mode", "relay")
CLOSED = ("bad_stun", "unknown_username", "bad_integrity", "oversize", "timeout", "write_full")


def frame(data):
    return struct.pack(">H", len(data)) + data


def tcp_candidates(sdp):
    """[(priority, address, port)] of the passive TCP candidates of an SDP."""
    return [(int(p), a, int(port)) for p, a, port in re.findall(
        r"(?m)^a=candidate:\S+ 1 tcp (\d+) (\S+) (\d+) typ host tcptype passive\r?$", sdp)]


def udp_priorities(sdp):
    return [int(p) for p in re.findall(r"(?m)^a=candidate:\S+ 1 udp (\d+) ", sdp)]


def tcp_stats(m):
    got = {r: m.get(f'chatd_tcp_closed_total{{reason="{r}"}}') for r in CLOSED}
    got["refused_strangers"] = m.get('chatd_tcp_refused_total{reason="strangers"}')
    got["refused_address"] = m.get('chatd_tcp_refused_total{reason="address"}')
    return got


async def wait_tcp(d, base, grow, what, timeout=10):
    """Waits until the TCP close/refusal counters are BASE plus GROW, the
    others unchanged."""
    want = {k: base[k] + grow.get(k, 0) for k in base}
    deadline = time.monotonic() + timeout
    while True:
        got = tcp_stats(await ametrics(d))
        if got == want:
            return
        if time.monotonic() > deadline or any(got[k] > want[k] for k in want):
            raise Failure(f"{what}: TCP counters {got}, want {want}")
        await asyncio.sleep(0.05)


async def gauge(d, state):
    return (await ametrics(d)).get(f'chatd_tcp_connections{{state="{state}"}}')


class Conn:
    """A TCP connection to chatd's ICE-TCP port."""

    def __init__(self, port, source="127.0.0.1"):
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.addr = self.sock.getsockname()
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    async def closed_by_chatd(self, what, timeout=3):
        """chatd closes it (end of stream or reset) and sent nothing."""
        self.sock.setblocking(False)
        deadline = time.monotonic() + timeout
        got = b""
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                await asyncio.sleep(0.02)
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                check(not got, f"{what}: chatd sent {got[:32].hex()} before closing")
                return time.monotonic()
            got += data
        raise Failure(f"{what}: the connection is still open after {timeout} s"
                      f" (received {len(got)} bytes)")

    async def read_frame(self, timeout=5, what="frame"):
        self.sock.setblocking(False)
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                n = struct.unpack(">H", self.buf[:2])[0]
                if len(self.buf) >= 2 + n:
                    f, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
                    return f
            if time.monotonic() > deadline:
                raise Failure(f"no {what} within {timeout} s")
            try:
                data = self.sock.recv(65536)
                if not data:
                    raise Failure(f"chatd closed the connection before the {what}")
                self.buf += data
            except BlockingIOError:
                await asyncio.sleep(0.01)

    async def expect_open(self, seconds=0.3):
        self.sock.setblocking(False)
        await asyncio.sleep(seconds)
        try:
            data = self.sock.recv(4096)
            check(data != b"", "chatd closed the connection")
            self.buf += data
        except BlockingIOError:
            pass

    def close(self):
        self.sock.close()


async def checked(conn, peer, use_candidate=False):
    """Sends a framed check with PEER's credentials on CONN; checks the
    framed answer."""
    req, txid = check_request(peer.chatd_ufrag, peer.ufrag, peer.chatd_pwd,
                              extra=attr(USE_CANDIDATE, b"") if use_candidate else b"")
    conn.send(frame(req))
    data = await conn.read_frame(what="Binding success")
    kind, rtxid, attrs = parse_stun(data)
    check(kind == BINDING_SUCCESS and rtxid == txid, f"reply {kind:#06x}, want a Binding success")
    check_reply_signed(data, attrs, peer.chatd_pwd)
    mapped = xor_mapped(attrs[XOR_MAPPED_ADDRESS][1])
    check(mapped == conn.addr, f"XOR-MAPPED-ADDRESS {mapped}, the connection is from {conn.addr}")


def chatd_tcp(name, *args):
    """chatd with --ice-tcp-port on a free port. Another process on this
    machine may take the port between free_port() and chatd's bind (an
    outgoing connection's ephemeral port): then another port."""
    for attempt in range(5):
        port = free_port()
        try:
            return Chatd(name, *RELAY, "--ice-tcp-port", str(port), *args), port
        except Failure as e:
            if "(--ice-tcp-port) is in use" not in str(e) or attempt == 4:
                raise


# --------------------------------------------------------------------------

@test
def answer_has_passive_tcp_candidates_and_aiortc_works():
    d, port = chatd_tcp("icetcp-answer")

    async def body():
        a, b = await pair(d, "cands")
        tcp = tcp_candidates(a.answer_sdp)
        udp = udp_priorities(a.answer_sdp)
        check(tcp and all(p == port for _, _, p in tcp),
              f"no passive TCP candidate on {port} in the answer:\n{a.answer_sdp}")
        check(len(tcp) == len(udp), f"{len(tcp)} TCP candidates for {len(udp)} UDP ones")
        check(max(p for p, _, _ in tcp) < min(udp), f"TCP priorities {tcp} not below UDP {udp}")
        await still_talking(a, b, "aiortc over UDP next to TCP candidates")
        m = await ametrics(d)
        check(m.get("chatd_tcp_accepted_total") == 0, "aiortc opened a TCP connection")
        await a.close()
        await b.close()

    asyncio.run(body())
    check(d.stop() == 0, "chatd exits 0")


@test
def checks_over_tcp_are_answered_and_carry_the_path():
    d, port = chatd_tcp("icetcp-path", "--loops", "4")

    async def body():
        a, b = await pair(d, "path")
        base = tcp_stats(await ametrics(d))
        # several connections: the kernel spreads them over the 4 loops'
        # listeners, and those not on a's loop are handed to it
        conns = []
        for i in range(4):
            c = Conn(port)
            await checked(c, a)
            conns.append(c)
        m = await ametrics(d)
        check(m.get('chatd_tcp_connections{state="open"}') == 4 and
              m.get('chatd_tcp_connections{state="stranger"}') == 0, f"gauges: {m}")
        handed = m.get("chatd_tcp_handed_off_total")
        # a fifth replaces the oldest (a peer keeps at most 4)
        fifth = Conn(port)
        await checked(fifth, a)
        await conns[0].closed_by_chatd("the oldest of five connections")
        conns = conns[1:] + [fifth]
        await still_talking(a, b, "UDP path kept (no USE-CANDIDATE)")
        # USE-CANDIDATE on one: chatd's sends to a now go there, framed
        await checked(conns[0], a, use_candidate=True)
        b.channel.send("to a, over TCP")
        f = await conns[0].read_frame(what="framed DTLS for a")
        check(20 <= f[0] <= 63, f"a frame that is not DTLS: {f[:16].hex()}")
        # the connection closes: a's next check (UDP) takes the path back
        conns[0].close()
        conns = conns[1:]
        got = await a.recv(timeout=20, what="b's message after the TCP path closed")
        check(got == "to a, over TCP", f"a got {got!r}")
        await still_talking(a, b, "back on UDP")
        await wait_tcp(d, base, {}, "no close counted for the peer's own connections", timeout=1)
        # the peer closes: its connections close
        await a.close()
        for i, c in enumerate(conns):
            await c.closed_by_chatd(f"connection {i} when its peer closed", timeout=10)
        m = await ametrics(d)
        check(m.get('chatd_tcp_connections{state="open"}') == 0, f"open after close: {m}")
        print(f"# {handed:.0f} of 4 connections were handed to the peer's loop")
        await b.close()

    asyncio.run(body())
    check(d.stop() == 0, "chatd exits 0")


@test
def strangers_first_frames_close_the_connection():
    d, port = chatd_tcp("icetcp-strangers")

    async def body():
        a, b = await pair(d, "strangers")
        base = tcp_stats(await ametrics(d))
        udp_base = drops(await ametrics(d))
        cases = [
            ("garbage", frame(b"hello, chatd" + os.urandom(40)), "bad_stun"),
            ("not framed at all", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "oversize"),
            ("a DTLS record", frame(dtls_record(22, 0, b"\x01" + os.urandom(100))), "bad_stun"),
            ("an empty frame", frame(b""), "bad_stun"),
            ("a check without FINGERPRINT",
             frame(check_request(a.chatd_ufrag, a.ufrag, a.chatd_pwd, fingerprint=False)[0]),
             "bad_stun"),
            ("a check for an unknown ufrag",
             frame(check_request("Zq9xY7wv", a.ufrag, a.chatd_pwd)[0]), "unknown_username"),
            ("a check with the wrong password",
             frame(check_request(a.chatd_ufrag, a.ufrag, "not-the-password-at-all")[0]),
             "bad_integrity"),
            ("a frame over 2 KiB", struct.pack(">H", 2049) + os.urandom(2049), "oversize"),
            ("a frame header over 2 KiB alone", struct.pack(">H", 65535), "oversize"),
        ]
        grow = {}
        for what, data, reason in cases:
            c = Conn(port)
            c.send(data)
            await c.closed_by_chatd(what)
            c.close()
            grow[reason] = grow.get(reason, 0) + 1
            await wait_tcp(d, base, grow, what)
        check(drops(await ametrics(d)) == udp_base, "UDP drop counters moved")
        await still_talking(a, b, "after the strangers")
        m = await ametrics(d)
        check(m.get('chatd_tcp_connections{state="open"}') == 0 and
              m.get('chatd_tcp_connections{state="stranger"}') == 0, f"gauges: {m}")
        await a.close()
        await b.close()

    asyncio.run(body())
    check(d.stop() == 0, "chatd exits 0")


@test
def silent_connections_close_after_5s():
    d, port = chatd_tcp("icetcp-silent")

    async def body():
        base = tcp_stats(await ametrics(d))
        t0 = time.monotonic()
        silent = Conn(port)
        partial = Conn(port)
        partial.send(struct.pack(">H", 100) + b"x" * 40)  # a frame that never ends
        await asyncio.sleep(1)
        check(await gauge(d, "stranger") == 2, "two strangers open")
        t1 = await silent.closed_by_chatd("a silent connection", timeout=8)
        t2 = await partial.closed_by_chatd("a half frame", timeout=8)
        for t, what in ((t1, "silent"), (t2, "half frame")):
            check(4.5 <= t - t0 <= 6.5, f"{what} closed after {t - t0:.1f} s, want 5 s")
        await wait_tcp(d, base, {"timeout": 2}, "silent connections")
        check(await gauge(d, "stranger") == 0, "strangers left")

    asyncio.run(body())
    check(d.stop() == 0, "chatd exits 0")


@test
def strangers_capped_per_address_and_in_all():
    d, port = chatd_tcp("icetcp-caps")

    async def body():
        base = tcp_stats(await ametrics(d))
        held = [Conn(port) for _ in range(8)]
        await asyncio.sleep(0.3)
        check(await gauge(d, "stranger") == 8, "8 strangers from 127.0.0.1")
        ninth = Conn(port)
        await ninth.closed_by_chatd("the 9th stranger from one address", timeout=3)
        await wait_tcp(d, base, {"refused_address": 1}, "per-address cap")
        other = Conn(port, source="127.0.0.2")
        await other.expect_open()
        for c in held:
            await c.expect_open(0)
        # 256 in all: 8 from each of 32 addresses (this one included)
        held.append(other)
        for i in range(2, 33):
            src = f"127.0.0.{i + 1}"
            for _ in range(8 if i > 2 else 7):
                held.append(Conn(port, source=src))
        deadline = time.monotonic() + 5
        while await gauge(d, "stranger") != 256:
            check(time.monotonic() < deadline, f"{await gauge(d, 'stranger')} strangers, want 256")
            await asyncio.sleep(0.05)
        extra = Conn(port, source="127.0.0.200")
        await extra.closed_by_chatd("the 257th stranger", timeout=3)
        await wait_tcp(d, base, {"refused_address": 1, "refused_strangers": 1}, "total cap")
        for c in held:
            c.close()
        deadline = time.monotonic() + 5
        while await gauge(d, "stranger") != 0:
            check(time.monotonic() < deadline, "strangers not released after they closed")
            await asyncio.sleep(0.05)
        late = Conn(port)  # room again
        await late.expect_open()
        late.close()

    asyncio.run(body())
    check(d.stop() == 0, "chatd exits 0")


@test
def ice_tcp_needs_the_one_port_transport():
    import subprocess
    from harness import CHATD_BIN
    p = subprocess.run([CHATD_BIN, "--listen", "127.0.0.1:0", "--rtc-port", "0",
                        "--ice-tcp-port", str(free_port())], capture_output=True, text=True,
                       timeout=20)
    check(p.returncode == 2 and "--ice-tcp-port" in p.stderr,
          f"exit {p.returncode}, stderr {p.stderr!r}")


if __name__ == "__main__":
    run()
