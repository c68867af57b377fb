#!/usr/bin/python3
"""Integration: chatd's one-port transport (--rtc-port, ICE-lite, src/rtc/mux.c)
against strangers, a client behind NAT, and thousands of peers. chatd runs
in relay mode; each test starts its own.

- Strangers: datagrams from sockets that never made an offer (garbage, a
  DTLS-looking record, STUN checks for an unknown ufrag, with a wrong
  password, malformed STUN) are dropped, each counted under its reason in
  /metrics, and nothing is sent back; a check with the right credentials
  from a new socket is answered with that socket's address
  (XOR-MAPPED-ADDRESS); the real peers keep talking throughout.
- NAT: aiortc and chat-client in a namespace of their own, behind a router
  namespace that masquerades (nftables), reach chatd in a third namespace;
  chatd learns their address from their checks (peer-reflexive: the NAT's
  address is in no candidate of their offers) and talks to it.
- Crosstalk: 2 000 peers (tests/load/crosstalk.c, the C client transport)
  in 1 000 rooms of two on one port: each receives exactly its partner's
  numbered tokens, in order, and nothing else; no datagram is dropped while
  they connect and talk; every gauge is back to 0 after the close.

The STUN messages are built here, independently of src/rtc/stun.c (RFC
8489: header, USERNAME, MESSAGE-INTEGRITY as HMAC-SHA1 under the ICE
password, FINGERPRINT as CRC-32 xor 0x5354554E).

    /usr/bin/python3 tests/integration/test_mux.py [TEST...]

Environment: CHATD_BIN, CHAT_CLIENT_BIN, CROSSTALK_BIN (default
build/tests/crosstalk, the release build's: the server is under test; else
the one beside CHATD_BIN), MUX_PEERS (default 2000). The NAT test needs
root, unshare, nsenter, ip and nft (make deps installs nftables).
"""

import asyncio
import contextlib
import ctypes
import hashlib
import hmac
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import ROOT, Chatd, Failure, Skip, check, run, test, wait_until  # noqa: E402
from rtcpeer import DataChannelPeer  # noqa: E402

import aioice.ice  # noqa: E402  (rtcpeer made sure it imports)

RELAY = ("--mode", "relay")
REASONS = ("unknown_source", "bad_stun", "unknown_username", "bad_integrity", "inbox_full")
# The release build's when there is one (the server is under test), else
# the one built beside CHATD_BIN (make test-asan builds no release tests).
CROSSTALK_BIN = os.environ.get("CROSSTALK_BIN") or next(
    (b for b in (os.path.join(ROOT, "build", "tests", "crosstalk"),
                 os.path.join(os.path.dirname(harness.CHATD_BIN), "tests", "crosstalk"))
     if os.access(b, os.X_OK)), os.path.join(ROOT, "build", "tests", "crosstalk"))
MANY_PEERS = int(os.environ.get("MUX_PEERS", "2000"))
MANY_MESSAGES = 5  # numbered tokens each of them sends


# --------------------------------------------------------------------------
# STUN (RFC 8489), written independently of chatd's

MAGIC = 0x2112A442
BINDING_REQUEST, BINDING_INDICATION, BINDING_SUCCESS = 0x0001, 0x0011, 0x0101
USERNAME, MESSAGE_INTEGRITY, XOR_MAPPED_ADDRESS = 0x0006, 0x0008, 0x0020
PRIORITY, USE_CANDIDATE, FINGERPRINT, ICE_CONTROLLING = 0x0024, 0x0025, 0x8028, 0x802A


def attr(kind, value):
    return struct.pack(">HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def stun_message(kind=BINDING_REQUEST, username=None, pwd=None, fingerprint=True, extra=b"",
                 txid=None):
    """A STUN message: USERNAME (when given), PRIORITY, ICE-CONTROLLING,
    EXTRA attributes, MESSAGE-INTEGRITY (when PWD is given) and
    FINGERPRINT (unless told not to). Returns (bytes, txid)."""
    txid = txid or secrets.token_bytes(12)
    body = b""
    if username is not None:
        body += attr(USERNAME, username.encode())
    body += attr(PRIORITY, struct.pack(">I", (110 << 24) | (65535 << 8) | 255))
    body += attr(ICE_CONTROLLING, secrets.token_bytes(8)) + extra

    def header(length):
        return struct.pack(">HHI", kind, length, MAGIC) + txid

    if pwd is not None:  # the length in the header covers MESSAGE-INTEGRITY
        mac = hmac.new(pwd.encode(), header(len(body) + 24) + body, hashlib.sha1).digest()
        body += attr(MESSAGE_INTEGRITY, mac)
    if fingerprint:
        crc = zlib.crc32(header(len(body) + 8) + body) ^ 0x5354554E
        body += attr(FINGERPRINT, struct.pack(">I", crc))
    return header(len(body)) + body, txid


def check_request(local_ufrag, remote_ufrag, pwd, **kw):
    """An ICE connectivity check to chatd: USERNAME is chatd's ufrag, a
    colon, the client's ufrag (RFC 8445 §7.2.2)."""
    return stun_message(username=f"{local_ufrag}:{remote_ufrag}", pwd=pwd, **kw)


def parse_stun(data):
    """(type, txid, {attr: (offset, value)}), checking the framing."""
    check(len(data) >= 20, f"a STUN reply of {len(data)} bytes")
    kind, length, magic = struct.unpack(">HHI", data[:8])
    check(magic == MAGIC and length == len(data) - 20, f"STUN framing: {data[:20].hex()}")
    attrs, off = {}, 20
    while off < len(data):
        t, n = struct.unpack(">HH", data[off:off + 4])
        check(off + 4 + n <= len(data), f"attribute {t:#x} past the end")
        attrs[t] = (off, data[off + 4:off + 4 + n])
        off += 4 + n + (-n % 4)
    return kind, data[8:20], attrs


def check_reply_signed(data, attrs, pwd):
    """MESSAGE-INTEGRITY under PWD and FINGERPRINT (last) are right."""
    check(MESSAGE_INTEGRITY in attrs and FINGERPRINT in attrs,
          f"reply without MESSAGE-INTEGRITY or FINGERPRINT: {sorted(attrs)}")
    at, mac = attrs[MESSAGE_INTEGRITY]
    head = data[:2] + struct.pack(">H", at + 24 - 20) + data[4:20]
    want = hmac.new(pwd.encode(), head + data[20:at], hashlib.sha1).digest()
    check(hmac.compare_digest(mac, want), "the reply's MESSAGE-INTEGRITY is wrong")
    at, crc = attrs[FINGERPRINT]
    check(at + 8 == len(data), "FINGERPRINT is not the last attribute")
    check(struct.unpack(">I", crc)[0] == zlib.crc32(data[:at]) ^ 0x5354554E,
          "the reply's FINGERPRINT is wrong")


def xor_mapped(value):
    """XOR-MAPPED-ADDRESS (IPv4) as (host, port)."""
    check(len(value) == 8 and value[1] == 1, f"XOR-MAPPED-ADDRESS not IPv4: {value.hex()}")
    port = struct.unpack(">H", value[2:4])[0] ^ (MAGIC >> 16)
    ip = struct.unpack(">I", value[4:8])[0] ^ MAGIC
    return socket.inet_ntoa(struct.pack(">I", ip)), port


def dtls_record(content_type, epoch, payload):
    """A DTLS 1.2 record header (RFC 6347 §4.1) around PAYLOAD."""
    seq = secrets.token_bytes(6)
    return struct.pack(">BHH", content_type, 0xFEFD, epoch) + seq + \
        struct.pack(">H", len(payload)) + payload


# --------------------------------------------------------------------------
# SDP, metrics, peers

def sdp_value(sdp, key):
    m = re.search(rf"(?m)^a={key}:(\S+)", sdp)
    check(m, f"no a={key} in {sdp!r}")
    return m.group(1)


def sdp_candidates(sdp):
    """[(address, port, type)] of the UDP candidates of an SDP."""
    return [(a, int(p), t) for a, p, t in
            re.findall(r"(?m)^a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ (\w+)", sdp, re.I)]


def drops(m):
    return {r: m.get(f'chatd_udp_dropped_total{{reason="{r}"}}') for r in REASONS}


async def ametrics(d):
    return await asyncio.get_running_loop().run_in_executor(None, d.metrics)


async def wait_drops(d, base, grow, what, settle=0.3):
    """Waits until chatd's drop counters are BASE plus GROW ({reason: n},
    the others unchanged), then a moment more: they must stay exact."""
    want = {r: base[r] + grow.get(r, 0) for r in REASONS}
    deadline = time.monotonic() + 10
    while True:
        got = drops(await ametrics(d))
        if got == want:
            break
        if time.monotonic() > deadline or any(got[r] > want[r] for r in REASONS):
            raise Failure(f"{what}: drop counters {got}, want {want}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(settle)
    got = drops(await ametrics(d))
    check(got == want, f"{what}: drop counters moved on to {got}, want {want}")


class Peer(DataChannelPeer):
    """aiortc in room ROOM, with its credentials and chatd's at hand."""

    async def connect(self, timeout=15):
        await super().connect(timeout)
        self.ufrag = sdp_value(self.sent_sdp, "ice-ufrag")
        self.chatd_ufrag = sdp_value(self.answer_sdp, "ice-ufrag")
        self.chatd_pwd = sdp_value(self.answer_sdp, "ice-pwd")
        return self

    async def recv(self, timeout=10, what="message"):
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Failure(f"no {what} within {timeout} s")


async def pair(d, room):
    """Two aiortc peers in ROOM, both subscribed (chatd: none pending)."""
    a = await Peer(d.url, f"?room={room}").connect()
    b = await Peer(d.url, f"?room={room}").connect()
    deadline = time.monotonic() + 10
    while True:
        m = await ametrics(d)
        if m.get("chatd_peers") == 2 and m.get("chatd_pending_peers") == 0:
            return a, b
        check(time.monotonic() < deadline, f"two open sessions: {m}")
        await asyncio.sleep(0.05)


async def still_talking(a, b, tag):
    """The real peers exchange one message each way, and nothing else."""
    a.channel.send(f"{tag}: a to b")
    got = await b.recv(what=f"{tag}: a's message")
    check(got == f"{tag}: a to b", f"{tag}: b got {got!r}")
    b.channel.send(f"{tag}: b to a")
    got = await a.recv(what=f"{tag}: b's message")
    check(got == f"{tag}: b to a", f"{tag}: a got {got!r}")
    check(a.queue.empty() and b.queue.empty(), f"{tag}: something extra arrived")


class Stranger:
    """A UDP socket on 127.0.0.1 that never made an offer."""

    def __init__(self, port, local_port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", local_port))
        self.sock.setblocking(False)
        self.to = ("127.0.0.1", port)
        self.addr = self.sock.getsockname()

    def send(self, *datagrams):
        for data in datagrams:
            self.sock.sendto(data, self.to)
        return len(datagrams)

    async def replies(self, seconds):
        """What arrives within SECONDS: [(data, from)]."""
        got = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                got.append(self.sock.recvfrom(4096))
            except BlockingIOError:
                await asyncio.sleep(0.01)
        return got

    async def answer_to(self, txid, seconds):
        """The reply with transaction id TXID, as soon as it comes; None if
        none within SECONDS."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(4096)
                if parse_stun(data)[1] == txid:
                    return data
            except BlockingIOError:
                await asyncio.sleep(0.002)
        return None

    async def expect_silence(self, what, seconds=0.3):
        got = await self.replies(seconds)
        check(not got, f"{what}: chatd sent {len(got)} datagram(s) back: "
                       f"{[g[0][:24].hex() for g in got]}")

    def close(self):
        self.sock.close()


def rtc_port(answer_sdp):
    ports = {p for _, p, _ in sdp_candidates(answer_sdp)}
    check(len(ports) == 1, f"the answer's candidates are not on one port: {answer_sdp}")
    return ports.pop()


# --------------------------------------------------------------------------
# 1. strangers

@test
def strangers_are_dropped_and_counted():
    d = Chatd("mux-strangers", *RELAY)

    async def body():
        a, b = await pair(d, "strangers")
        port = rtc_port(a.answer_sdp)
        await still_talking(a, b, "before")
        base = drops(await ametrics(d))
        check(all(v == 0 for v in base.values()), f"drops before any stranger: {base}")

        # (a) not STUN, from an address chatd never heard from
        s = Stranger(port)
        n = s.send(b"\x80" + os.urandom(99),  # RTP-looking
                   b"hello, chatd",
                   b"\x00",  # first byte of STUN, nothing else
                   b"",  # an empty datagram
                   b"\xff" + os.urandom(1199),
                   dtls_record(22, 0, b"\x01" + os.urandom(120)),  # a ClientHello-like record
                   dtls_record(23, 1, os.urandom(64)))  # application data
        await wait_drops(d, base, {"unknown_source": n}, "garbage and DTLS from a stranger")
        await s.expect_silence("garbage")
        await still_talking(a, b, "after garbage")
        base = drops(await ametrics(d))

        # (b) a well-formed check for a ufrag no peer has
        s2 = Stranger(port)
        other = next(u for u in ("Zq9xY7wv", "Wv7Yx9qZ") if u != a.chatd_ufrag)
        n = s2.send(check_request(other, a.ufrag, a.chatd_pwd)[0],
                    check_request("abcd", "efgh", "0123456789abcdefghijkl")[0])
        await wait_drops(d, base, {"unknown_username": n}, "checks for an unknown ufrag")
        await s2.expect_silence("unknown ufrag")
        await still_talking(a, b, "after unknown ufrags")
        base = drops(await ametrics(d))

        # (c) the real peer's ufrag, but the wrong password (and the right
        # password with another client ufrag); chatd learns nothing: that
        # socket's DTLS afterwards is a stranger's
        s3 = Stranger(port)
        n = s3.send(check_request(a.chatd_ufrag, a.ufrag, "not-the-password-at-all")[0],
                    check_request(a.chatd_ufrag, a.ufrag, a.chatd_pwd[:-1] + "#")[0],
                    check_request(a.chatd_ufrag, a.ufrag + "x", a.chatd_pwd)[0],
                    check_request(a.chatd_ufrag, "", a.chatd_pwd)[0])
        await wait_drops(d, base, {"bad_integrity": n}, "checks with the wrong password")
        await s3.expect_silence("wrong password")
        s3.send(dtls_record(23, 1, os.urandom(48)))
        await wait_drops(d, base, {"bad_integrity": n, "unknown_source": 1},
                         "DTLS after a failed check")
        await still_talking(a, b, "after wrong passwords")
        base = drops(await ametrics(d))

        # (d) malformed STUN (it passes the RFC 7983 demux: first byte 0..3,
        # the magic cookie, a length that matches the datagram)
        good, _ = check_request(a.chatd_ufrag, a.ufrag, a.chatd_pwd)
        no_fp, _ = check_request(a.chatd_ufrag, a.ufrag, a.chatd_pwd, fingerprint=False)
        no_mi, _ = check_request(a.chatd_ufrag, a.ufrag, None)
        bad_fp = good[:-4] + bytes(x ^ 0xFF for x in good[-4:])
        past_end = struct.pack(">HHI", BINDING_REQUEST, 8, MAGIC) + secrets.token_bytes(12) + \
            struct.pack(">HH", USERNAME, 200) + b"abcd"  # an attribute 200 bytes long in 8
        no_colon, _ = stun_message(username=a.chatd_ufrag + a.ufrag, pwd=a.chatd_pwd)
        response, _ = stun_message(BINDING_SUCCESS, pwd=a.chatd_pwd)
        indication, _ = stun_message(BINDING_INDICATION)
        header_only = struct.pack(">HHI", BINDING_REQUEST, 0, MAGIC) + secrets.token_bytes(12)
        oversize = struct.pack(">HHI", BINDING_REQUEST, 3000 - 20, MAGIC) + \
            secrets.token_bytes(12) + attr(0x8022, os.urandom(3000 - 24))  # SOFTWARE
        s4 = Stranger(port)
        n = s4.send(no_fp, no_mi, bad_fp, past_end, no_colon, response, indication, header_only,
                    oversize)
        await wait_drops(d, base, {"bad_stun": n}, "malformed STUN")
        # cut short, a STUN message no longer passes the demux: not STUN
        s4.send(good[:len(good) - 12])
        await wait_drops(d, base, {"bad_stun": n, "unknown_source": 1}, "a truncated check")
        await s4.expect_silence("malformed STUN")

        await still_talking(a, b, "after the strangers")
        m = await ametrics(d)
        check(m.get("chatd_peers") == 2 and m.get("chatd_peer_objects") == 2,
              f"the real peers are still the only ones: {m}")
        for s_ in (s, s2, s3, s4):
            s_.close()
        await a.close()
        await b.close()

    asyncio.run(body())
    check(d.stop() == 0, "chatd exits 0")


@test
def unknown_long_ufrag_counts_as_unknown_username():
    # chatd's ufrags are 8 characters, but a client's USERNAME may name any
    # ufrag (RFC 8445: 4 to 256 characters). A well-formed check for a
    # longer one that no peer has is an unknown username, like a short one.
    d = Chatd("mux-long-ufrag", *RELAY)

    async def body():
        a, b = await pair(d, "long")
        base = drops(await ametrics(d))
        s = Stranger(rtc_port(a.answer_sdp))
        n = s.send(check_request("Zq9xY7wvQ", a.ufrag, a.chatd_pwd)[0],
                   check_request("x" * 32, a.ufrag, a.chatd_pwd)[0])
        await wait_drops(d, base, {"unknown_username": n}, "checks for a 9- and 32-character ufrag")
        await s.expect_silence("long unknown ufrag")
        s.close()
        await a.close()
        await b.close()

    asyncio.run(body())
    check(d.stop() == 0, "chatd exits 0")


@test
def valid_check_from_a_new_socket_is_answered_with_its_address():
    d = Chatd("mux-valid-check", *RELAY)

    async def body():
        a, b = await pair(d, "valid")
        port = rtc_port(a.answer_sdp)
        base = drops(await ametrics(d))
        s = Stranger(port)
        # no USE-CANDIDATE: the nominated pair stays aiortc's own
        req, txid = check_request(a.chatd_ufrag, a.ufrag, a.chatd_pwd)
        s.send(req)
        got = await s.replies(1.0)
        check(len(got) == 1, f"one Binding success for one check, got {len(got)}")
        data, sender = got[0]
        check(sender == ("127.0.0.1", port),
              f"the answer came from {sender}, not the address checked ({port})")
        kind, rtxid, attrs = parse_stun(data)
        check(kind == BINDING_SUCCESS, f"reply type {kind:#06x}, want a Binding success")
        check(rtxid == txid, "the reply's transaction id is not the request's")
        check_reply_signed(data, attrs, a.chatd_pwd)
        check(XOR_MAPPED_ADDRESS in attrs, f"no XOR-MAPPED-ADDRESS: {sorted(attrs)}")
        mapped = xor_mapped(attrs[XOR_MAPPED_ADDRESS][1])
        check(mapped == s.addr, f"XOR-MAPPED-ADDRESS {mapped}, the socket is {s.addr}")
        # a retransmission (same transaction) is answered the same way
        s.send(req)
        again = await s.replies(1.0)
        check(len(again) == 1 and parse_stun(again[0][0])[1] == txid,
              f"the retransmitted check: {len(again)} replies")
        await wait_drops(d, base, {}, "valid checks", settle=0)

        # DTLS garbage from that socket: the check proved it is this peer's
        # 5-tuple, so it goes to the peer's DTLS, which must discard it:
        # no answer, no message anywhere, the real peers unharmed
        n = s.send(dtls_record(23, 1, os.urandom(80)),  # application data, bad MAC
                   dtls_record(22, 0, b"\x01" + os.urandom(90)),  # a handshake record
                   dtls_record(21, 0, b"\x02\x00"),  # a plaintext fatal close_notify
                   dtls_record(21, 1, os.urandom(26)),  # an encrypted-looking alert
                   b"\x17" + os.urandom(40))  # type 23, nonsense header
        await s.expect_silence("DTLS garbage from a checked socket", 0.5)
        await wait_drops(d, base, {}, f"{n} DTLS records on a checked 5-tuple", settle=0.2)
        check(d.alive(), "chatd is running")
        await still_talking(a, b, "after the garbage")
        m = await ametrics(d)
        check(m.get("chatd_peers") == 2 and m.get("chatd_peer_objects") == 2,
              f"both sessions alive: {m}")
        s.close()
        await a.close()
        await b.close()

    asyncio.run(body())
    check(d.stop() == 0, "chatd exits 0")


@test(timeout=90)
def a_client_on_a_dead_peers_port_is_answered():
    """A client that takes the port of a client that vanished (its peer still
    holds the 5-tuple until consent runs out) is answered at once, whatever
    loops the dead peer, the new peer and the receiving socket are on. With
    2 loops, one try in four has the dead peer on the other loop and the new
    one on the loop that reads the port: its check went to the dead peer's
    loop, back by its ufrag, and (before the fix) to the dead peer's loop
    again, forever, until the new peer's setup timed out. 32 tries miss
    that case with probability 0.1 %."""
    d = Chatd("mux-port-reuse", *RELAY)

    async def body():
        peers = [await Peer(d.url, f"?room=reuse{i}").connect() for i in range(6)]
        port = rtc_port(peers[0].answer_sdp)
        unanswered = []
        for k in range(32):
            x, y = peers[k % 6], peers[(k * 5 + 1) % 6]
            if x is y:
                y = peers[(k + 1) % 6]
            first = Stranger(port)
            local = first.addr[1]
            req, txid = check_request(x.chatd_ufrag, x.ufrag, x.chatd_pwd)
            first.send(req)
            check(await first.answer_to(txid, 2.0), f"try {k}: the first client's check")
            first.close()  # gone without a word: x's peer keeps the 5-tuple
            second = Stranger(port, local_port=local)
            req, txid = check_request(y.chatd_ufrag, y.ufrag, y.chatd_pwd)
            second.send(req)
            if await second.answer_to(txid, 1.0) is None:
                unanswered.append(k)
            second.close()
        check(not unanswered, f"checks from a dead peer's port never answered: tries {unanswered}")
        for p in peers:
            await p.close()

    asyncio.run(body())
    check(d.stop() == 0, "chatd exits 0")


@test
def a_client_checking_from_five_addresses_keeps_its_path():
    # A client with several interfaces (or chatd with several host
    # candidates) checks every pair: one 5-tuple per pair, all with the
    # client's own credentials. chatd remembers a few 5-tuples per peer;
    # the pair the client nominated and uses must stay reachable however
    # many others check in: its next datagrams are delivered, none dropped.
    d = Chatd("mux-five-tuples", *RELAY)

    async def body():
        a, b = await pair(d, "five")
        await still_talking(a, b, "before")
        base = drops(await ametrics(d))
        others = [Stranger(rtc_port(a.answer_sdp)) for _ in range(4)]
        for s in others:  # no USE-CANDIDATE: aiortc's pair stays nominated
            s.send(check_request(a.chatd_ufrag, a.ufrag, a.chatd_pwd)[0])
            got = await s.replies(0.3)
            check(len(got) == 1 and parse_stun(got[0][0])[0] == BINDING_SUCCESS,
                  f"a check from another of the client's 5-tuples: {len(got)} replies")
        start = time.monotonic()
        a.channel.send("from the nominated pair")
        got = await b.recv(timeout=15, what="the message on the nominated pair")
        took = time.monotonic() - start
        check(got == "from the nominated pair", f"b got {got!r}")
        now = drops(await ametrics(d))
        check(now == base,
              f"after 4 more of its 5-tuples checked in, the client's datagrams from the pair it "
              f"nominated were dropped: {base} -> {now}; the message took {took:.1f} s "
              f"(until its next consent check)")
        check(took < 1.0, f"the message took {took:.1f} s")
        for s in others:
            s.close()
        await a.close()
        await b.close()

    asyncio.run(body())
    check(d.stop() == 0, "chatd exits 0")


# --------------------------------------------------------------------------
# 2. a client behind NAT

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
SERVER, ROUTER_S, ROUTER_C, CLIENT = "10.78.1.1", "10.78.1.2", "10.78.2.1", "10.78.2.2"


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


@contextlib.contextmanager
def in_netns(pid):
    """The calling thread (and what it starts: processes, threads, sockets)
    in the network namespace of PID."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        _setns(home)
        os.close(home)
        os.close(target)


def sh(*argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    check(p.returncode == 0, f"{' '.join(argv)}: {p.stderr.strip()}")


class NatNetwork:
    """Three network namespaces, each held by a sleeping process of this
    test (gone with it): SERVER (10.78.1.1) - ROUTER (10.78.1.2 | 10.78.2.1,
    forwards, masquerades what leaves towards SERVER) - CLIENT (10.78.2.2,
    default route via the router)."""

    def __init__(self):
        if os.geteuid() != 0:
            raise Skip("network namespaces need root")
        for tool in ("unshare", "nsenter", "ip", "nft"):
            if not shutil.which(tool):
                raise Skip(f"no {tool} (make deps installs iproute2, util-linux, nftables)")
        self.server, self.router, self.client = (self._holder() for _ in range(3))
        sh("ip", "link", "add", "s0", "netns", str(self.server), "type", "veth",
           "peer", "name", "r0", "netns", str(self.router))
        sh("ip", "link", "add", "c0", "netns", str(self.client), "type", "veth",
           "peer", "name", "r1", "netns", str(self.router))
        self.run(self.server, "ip link set lo up", f"ip addr add {SERVER}/24 dev s0",
                 "ip link set s0 up", f"ip route add default via {ROUTER_S}")
        self.run(self.router, "ip link set lo up", f"ip addr add {ROUTER_S}/24 dev r0",
                 f"ip addr add {ROUTER_C}/24 dev r1", "ip link set r0 up", "ip link set r1 up",
                 "sysctl -qw net.ipv4.ip_forward=1",
                 "nft add table ip nat",
                 "nft add chain ip nat post '{ type nat hook postrouting priority 100 ; }'",
                 "nft add rule ip nat post oifname r0 ip saddr 10.78.2.0/24 masquerade random")
        self.run(self.client, "ip link set lo up", f"ip addr add {CLIENT}/24 dev c0",
                 "ip link set c0 up", f"ip route add default via {ROUTER_C}")

    @staticmethod
    def _holder():
        p = subprocess.Popen(["unshare", "-n", "sleep", "3600"])
        harness._live.append(p)
        home = os.readlink("/proc/self/ns/net")
        wait_until(lambda: os.path.exists(f"/proc/{p.pid}/ns/net") and
                   os.readlink(f"/proc/{p.pid}/ns/net") != home and
                   open(f"/proc/{p.pid}/comm").read().strip() == "sleep",
                   5, "a network namespace")
        return p.pid

    @staticmethod
    def run(pid, *commands):
        for c in commands:
            sh("nsenter", "-t", str(pid), "-n", "sh", "-c", c)


class Sniffer:
    """Every UDP datagram to or from PORT on interface IFACE (opened in the
    calling thread's namespace), from a thread: [(out, remote ip, remote
    port, payload)]."""

    def __init__(self, iface):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self.sock.bind((iface, 0))
        self.sock.settimeout(0.1)
        self.frames = []
        self.stop_ = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stop_.is_set():
            try:
                self.frames.append(self.sock.recvfrom(65535))
            except socket.timeout:
                pass

    def stop(self):
        self.stop_.set()
        self.thread.join(2)
        self.sock.close()

    def udp(self, port):
        out = []
        for frame, _ in self.frames:
            ip = frame[14:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            hl = (ip[0] & 15) * 4
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            sport, dport = struct.unpack(">HH", ip[hl:hl + 4])
            payload = ip[hl + 8:]
            if sport == port:
                out.append((True, dst, dport, payload))
            elif dport == port:
                out.append((False, src, sport, payload))
        return out


@test(timeout=90)
def client_behind_nat_is_peer_reflexive():
    net = NatNetwork()
    with in_netns(net.server):
        d = Chatd("mux-nat", *RELAY, "--listen", f"{SERVER}:0", ice=SERVER)
        sniff = Sniffer("s0")
        here = harness.Client(d.url + "?room=nat", "--raw")  # beside chatd, over lo
        here.wait_connected()
    with in_netns(net.client):
        behind = harness.Client(d.url + "?room=nat", "--raw")
        behind.wait_connected()
        aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: [CLIENT]

        async def body():
            p = await Peer(d.url, "?room=nat").connect()
            cands = sdp_candidates(p.sent_sdp)
            check(cands and all(a == CLIENT for a, _, _ in cands),
                  f"aiortc's offer should list {CLIENT} only: {cands}")
            answer = sdp_candidates(p.answer_sdp)
            check([a for a, _, _ in answer] == [SERVER], f"chatd's candidates: {answer}")
            deadline = time.monotonic() + 10
            while (await ametrics(d)).get("chatd_pending_peers") != 0:
                check(time.monotonic() < deadline, "three sessions open")
                await asyncio.sleep(0.05)
            # both ways, every pair: aiortc, chat-client behind the NAT,
            # chat-client beside chatd
            p.channel.send("from aiortc behind the NAT")
            for c in (here, behind):
                got = await asyncio.get_running_loop().run_in_executor(
                    None, lambda c=c: c.wait_lines(1, 10))
                check(got[:1] == ["from aiortc behind the NAT"], f"got {got}")
            here.send("from beside chatd")
            check(await p.recv(what="the message from beside chatd") == "from beside chatd",
                  "aiortc got the wrong message")
            behind.send("from chat-client behind the NAT")
            check(await p.recv(what="the message from behind the NAT") ==
                  "from chat-client behind the NAT", "aiortc got the wrong message")
            got = await asyncio.get_running_loop().run_in_executor(
                None, lambda: here.wait_lines(2, 10))
            check(got == ["from aiortc behind the NAT", "from chat-client behind the NAT"],
                  f"beside chatd: {got}")
            got = await asyncio.get_running_loop().run_in_executor(
                None, lambda: behind.wait_lines(2, 10))
            check(got == ["from aiortc behind the NAT", "from beside chatd"],
                  f"behind the NAT: {got}")
            m = await ametrics(d)
            await p.close()
            return p.sent_sdp, cands, m, rtc_port(p.answer_sdp)

        offer, cands, m, port = asyncio.run(body())
        check(behind.finish() == 0, f"chat-client behind the NAT exits 0: {behind.err_lines}")
    with in_netns(net.server):
        check(here.finish() == 0, f"chat-client beside chatd exits 0: {here.err_lines}")
        time.sleep(0.2)
        sniff.stop()
        check(d.stop() == 0, "chatd exits 0")
    check(drops(m) == {r: 0 for r in REASONS}, f"datagrams dropped: {drops(m)}")

    # What chatd saw on its wire: every datagram of its RTC port came from,
    # or went to, the NAT's address, which no offer named; and what chatd
    # said it saw (XOR-MAPPED-ADDRESS in its Binding successes) is that.
    seen = sniff.udp(port)
    check(seen, f"no datagram of port {port} on s0")
    remotes = {(ip, rport) for _, ip, rport, _ in seen}
    check({ip for ip, _ in remotes} == {ROUTER_S},
          f"chatd's remote addresses on s0: {sorted(remotes)}, want only the NAT's {ROUTER_S}")
    check(ROUTER_S not in offer and all(ip != ROUTER_S for ip, _, _ in cands),
          "the NAT's address is in aiortc's offer")
    check(len(remotes) >= 2, f"two clients behind one NAT address, two ports: {remotes}")
    check(any(out for out, *_ in seen) and any(not out for out, *_ in seen),
          "traffic both ways through the NAT")
    mapped = set()
    for out, ip, rport, payload in seen:
        if out and len(payload) >= 20 and payload[0] < 4 and \
                struct.unpack(">I", payload[4:8])[0] == MAGIC:
            kind, _, attrs = parse_stun(payload)
            if kind == BINDING_SUCCESS and XOR_MAPPED_ADDRESS in attrs:
                got = xor_mapped(attrs[XOR_MAPPED_ADDRESS][1])
                check(got == (ip, rport), f"chatd mapped {got} in a reply sent to {(ip, rport)}")
                mapped.add(got)
    check(mapped == remotes, f"chatd's Binding successes named {sorted(mapped)}, "
                             f"the remotes were {sorted(remotes)}")
    print(f"    nat: chatd saw {sorted(remotes)}; aiortc offered {cands}", flush=True)


# --------------------------------------------------------------------------
# 3. thousands of peers on one port

@test(timeout=240)
def many_peers_one_port_no_crosstalk():
    check(os.access(CROSSTALK_BIN, os.X_OK),
          f"{CROSSTALK_BIN} is missing: build it with make unit (tests/load/crosstalk.c)")
    n = MANY_PEERS
    d = Chatd("mux-crosstalk", *RELAY, "--loops", "2", "--max-peers", str(n),
              "--max-pending", str(n), "--setup-timeout", "60", "--log-level", "warn")
    base = d.metrics()
    start = time.monotonic()
    p = subprocess.run([CROSSTALK_BIN, "--url", d.url, "--peers", str(n), "--messages",
                        str(MANY_MESSAGES), "--loops", "2", "--timeout", "60"],
                       capture_output=True, text=True, timeout=200)
    took = time.monotonic() - start
    out = p.stdout.splitlines()
    result = [ln for ln in out if ln.startswith("crosstalk: peers=")]
    check(p.returncode == 0 and result,
          f"crosstalk exit {p.returncode}: {p.stdout[-1500:]} {p.stderr[-1500:]}; "
          f"chatd: {d.tail(5)}")
    fields = dict(kv.split("=") for kv in result[0].split(": ", 1)[1].split())
    for k, want in (("peers", n), ("messages", MANY_MESSAGES), ("opened", n), ("exact", n), ("missing", 0), ("wrong", 0),
                    ("extra", 0), ("closed_clean", n)):
        check(int(fields[k]) == want, f"{k}={fields[k]}, want {want}: {result[0]}")

    def phase(name):
        line = next((ln for ln in out if ln.startswith(f"crosstalk: chatd drops {name}:")), None)
        check(line, f"no drop counters for {name}: {p.stdout[-500:]}")
        return {k: float(v) for k, v in (kv.split("=") for kv in line.split(":", 2)[2].split())}

    before, delivered = phase("before"), phase("delivered")
    for r in REASONS:
        check(delivered[r] == before[r],
              f"{r} drops while {n} peers connected and talked: {before[r]:.0f} -> "
              f"{delivered[r]:.0f}")
    check(delivered["forwarded"] > before["forwarded"],
          "no datagram was handed between chatd's two loops (the inbox path is not exercised)")

    def back_to_zero():
        m = d.metrics()
        return m if all(m.get(k) == 0 for k in ("chatd_peers", "chatd_peer_objects",
                                                 "chatd_sctp_associations",
                                                 "chatd_pending_peers")) else None
    try:
        after = wait_until(back_to_zero, 20, "every gauge back to 0")
    except Failure:
        raise Failure(f"gauges after the close: {d.metrics()}")
    # The close itself: a client's last datagrams (its SCTP shutdown's last
    # chunk, a consent check due meanwhile) may reach chatd just after the
    # session is gone; they are dropped as strangers', nothing else.
    grew = {r: after[f'chatd_udp_dropped_total{{reason="{r}"}}'] - delivered[r] for r in REASONS}
    for r in ("bad_stun", "bad_integrity", "inbox_full"):
        check(grew[r] == 0, f"{r} drops during the close: {grew[r]:.0f}")
    check(grew["unknown_source"] + grew["unknown_username"] <= 4 * n,
          f"late datagrams after the close: {grew}")
    check(drops(base) == {r: 0 for r in REASONS}, f"drops at the start: {drops(base)}")
    check(d.stop() == 0, "chatd exits 0")
    print(f"    crosstalk: {n} peers in {n // 2} rooms on one port, {MANY_MESSAGES} tokens each: "
          f"connect "
          f"{float(fields['connect_s']):.1f} s, tokens {float(fields['deliver_s']):.2f} s, close "
          f"{float(fields['close_s']):.1f} s, run {took:.1f} s; forwarded between loops "
          f"{delivered['forwarded']:.0f}; after the close unknown_source "
          f"+{grew['unknown_source']:.0f}, unknown_username +{grew['unknown_username']:.0f}",
          flush=True)


if __name__ == "__main__":
    run()
