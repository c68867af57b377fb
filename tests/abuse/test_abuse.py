#!/usr/bin/python3
"""Abuse: what a stranger with no account and one machine can do to chatd
(issue 9), each attack reproduced against a running chatd, each with a
bound checked by counts and ratios, never by a wall-clock threshold.

    /usr/bin/python3 tests/abuse/test_abuse.py [TEST...]

Every test starts its own chatd (default limits of SPEC.md version 2: no
test passes a version-2 flag, so the same test runs on older code and
prints the "before" figure), the real JSONPlaceholder (harness fixture) and
real WebRTC peers (chat-client, or aiortc through tests/lib/rtcpeer.py).
Each prints one line of figures ("    NAME: ...") so a run states what it
measured.

Two source addresses: all of 127/8 is loopback, so the attacker's sockets
are bound to 127.0.0.2 (and up) while the honest client connects from
127.0.0.1.

  bad_offers_to_new_rooms          20 000 POST /api/rtc?room=rN, body "x",
                                   from 1 000 addresses: RSS grows < 2 MiB.
  half_open_flood_one_address      3 000 parseable offers that lead nowhere
                                   from one address: at most the burst plus
                                   the rate is admitted (429 + Retry-After
                                   for the rest), descriptors bounded, and a
                                   client from another address is welcomed.
  ping_burst_gets_the_budget       400 pings at once get at most the session
                                   budget of pongs (burst 40, 20/s) and a
                                   bounded number of RATE_LIMITED.
  slow_reader_is_closed            relay mode: a peer that stops reading
                                   (aiortc with its receive window held shut)
                                   is closed while a sender floods the room,
                                   a reading peer gets every message, RSS
                                   stays bounded.
  forged_signature_posts           10 000 posts with a well-formed token and
                                   a random signature from one session:
                                   another peer's ping round trip, median,
                                   rises at most FORGE_RATIO times.
  control_and_bidi_posts_refused   ESC, C1 and bidi posts get BAD_REQUEST and
                                   reach nobody; chat-client shows such
                                   characters from a relay peer visibly.
  escaped_history_still_delivered  15 posts of 2 000 four-byte characters
                                   (history over 64 KiB): a joiner still
                                   gets welcome and history.
  database_down_under_posting      PostgreSQL stopped ABUSE_DB_DOWN_S (20 s
                                   here, 60 s in the issue) under fast auto
                                   posts: RSS bounded, no delivered message
                                   lost once it is back.
  slow_http_clients                1 000 slow HTTP clients from one address:
                                   /api/health from another answers 200.

The welcome of a room of more than 1 300 users is not reproduced here
(that many real peers is too heavy for this machine); see docs/TESTING.md.
"""

import asyncio
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import (PY, ROOT, Chatd, Client, Failure, JsonClient, PrivatePostgres,  # noqa: E402
                     check, distinct_clients, run, start_chatd, test, url_port,
                     wait_until)

# The harness lifts --offer-rate for the other suites (all their clients
# come from 127.0.0.1); here every chatd runs with the contract's default.
os.environ["CHATD_OFFER_RATE"] = "5"

OFFER = os.path.join(ROOT, "tests", "fuzz", "corpus", "sdp", "browser_offer.sdp")
QUIET = ("--auto-post-max-ms", "600000")
MIB = 1024 * 1024
FORGE_RATIO = 4.0   # other peers' median round trip under the forged flood, at most
DB_DOWN_S = float(os.environ.get("ABUSE_DB_DOWN_S", "20"))


# Under ASan, freed memory sits in its quarantine (256 MiB by default), so
# RSS says nothing about chatd's own bounds: abuse-asan (ABUSE_RSS_BOUNDS=0)
# prints the figures and looks for memory errors; abuse checks the bounds.
RSS_BOUNDS = os.environ.get("ABUSE_RSS_BOUNDS", "1") == "1"


def check_rss(cond, reason):
    if RSS_BOUNDS:
        check(cond, reason)


def rss(d):
    with open(f"/proc/{d.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise Failure("no VmRSS")


def figure(name, text):
    print(f"    {name}: {text}", flush=True)


def metric(d, name):
    return d.metrics().get(name, 0.0)


def request(port, data, source, timeout=10):
    """One raw HTTP request from SOURCE; (status or None, head bytes)."""
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        head = b""
        while b"\r\n\r\n" not in head:
            c = s.recv(65536)
            if not c:
                break
            head += c
    except OSError as e:
        return None, str(e).encode()
    finally:
        s.close()
    parts = head.split(b"\r\n", 1)[0].split()
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None), head


def post_rtc(path, body):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
            + body)


def blast(port, reqs, threads=8):
    """REQS: list of (bytes, source); returns the list of (status, head)."""
    out = [None] * len(reqs)
    it = iter(range(len(reqs)))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            out[i] = request(port, *reqs[i])
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def counts(results):
    by = {}
    for st, _ in results:
        by[st] = by.get(st, 0) + 1
    return by


# --------------------------------------------------------------------------
# 2. room flood


@test(timeout=120)
def bad_offers_to_new_rooms():
    n = int(os.environ.get("ABUSE_BAD_OFFERS", "20000"))
    d = start_chatd("abuse_rooms", *QUIET)
    port = url_port(d.url)
    try:
        # warm up the allocator and the per-address tables on other rooms
        blast(port, [(post_rtc(b"/api/rtc?room=w%d" % i, b"x"), f"127.0.3.{i % 250 + 1}")
                     for i in range(1000)])
        time.sleep(0.5)
        before = rss(d)
        reqs = [(post_rtc(b"/api/rtc?room=r%d" % i, b"x"), f"127.0.{1 + i // 250 % 4}.{i % 250 + 1}")
                for i in range(n)]
        res = blast(port, reqs)
        time.sleep(0.5)
        grown = rss(d) - before
        by = counts(res)
        figure("bad_offers_to_new_rooms", f"{n} offers of body 'x' to new rooms: answers {by}; "
               f"RSS grew {grown / MIB:.2f} MiB ({grown / n:.0f} bytes per request)")
        check(d.alive(), f"chatd died: {d.tail(5)}")
        check(set(by) <= {400, 429}, f"answers other than 400/429: {by}")
        check_rss(grown < 2 * MIB, f"RSS grew {grown / MIB:.2f} MiB for {n} refused offers")
        check(d.health()[0] == 200, "health after the flood")
    finally:
        d.stop()


# --------------------------------------------------------------------------
# 1. half-open flood


@test(timeout=120)
def half_open_flood_one_address():
    n = int(os.environ.get("ABUSE_HALF_OPEN", "3000"))
    d = start_chatd("abuse_half_open", *QUIET)
    port = url_port(d.url)
    with open(OFFER, "rb") as f:
        offer = f.read()
    try:
        c = JsonClient(d.url)   # lazily opened descriptors into the baseline
        c.welcome()
        check(c.finish() == 0, "first client")
        time.sleep(0.5)
        fds0 = d.fd_count()
        t0 = time.monotonic()
        res = blast(port, [(post_rtc(b"/api/rtc", offer), "127.0.0.2")] * n, threads=4)
        took = time.monotonic() - t0
        fds = d.fd_count()
        by = counts(res)
        admitted = by.get(201, 0)
        limited = [h for st, h in res if st == 429]
        figure("half_open_flood_one_address",
               f"{n} half-open offers from 127.0.0.2 in {took:.1f} s: answers {by}; "
               f"descriptors {fds0} -> {fds}")
        # Meanwhile a client from another address connects and is welcomed.
        c = JsonClient(d.url)
        w = c.welcome(30)
        check(w.get("token"), f"welcome without a token: {w}")
        check(c.finish() == 0, "the honest client's exit status")
        # the contract: --offer-rate 5 per address, burst 4 x 5
        check(admitted <= 20 + 5 * took + 5,
              f"{admitted} offers admitted from one address in {took:.1f} s "
              f"(offer rate 5/s, burst 20)")
        check(limited and all(b"retry-after:" in h.lower() for h in limited),
              "429 answers without Retry-After")
        check(fds - fds0 <= 4 * max(admitted, 1) + 16,
              f"descriptors grew by {fds - fds0} for {admitted} admitted offers")
    finally:
        d.discard()


# --------------------------------------------------------------------------
# 4. slow reader


def run_async(coro, timeout):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@test(timeout=120)
def ping_burst_gets_the_budget():
    import rtcpeer  # noqa: F401 - aiortc, quieted, on 127.0.0.1
    d = start_chatd("abuse_pings", *QUIET)
    try:
        async def body():
            p = rtcpeer.DataChannelPeer(d.url)
            await p.connect()
            await welcome_of(p)
            while not p.queue.empty():
                p.queue.get_nowait()
            t0 = time.monotonic()
            for i in range(400):
                p.channel.send(json.dumps({"type": "ping", "ref": f"p{i}"}))
            await asyncio.sleep(3)
            took = time.monotonic() - t0
            got = []
            while not p.queue.empty():
                got.append(json.loads(p.queue.get_nowait()))
            await p.close()
            pongs = sum(1 for m in got if m.get("type") == "pong")
            limited = sum(1 for m in got if m.get("code") == "RATE_LIMITED")
            return pongs, limited, took
        pongs, limited, took = run_async(body(), 60)
        figure("ping_burst_gets_the_budget",
               f"400 pings at once: {pongs} pongs, {limited} RATE_LIMITED in {took:.1f} s")
        check(d.alive(), f"chatd died: {d.tail(5)}")
        # budget: burst 40, then 20/s; the answers to the excess are bounded too
        check(pongs <= 40 + 20 * (took + 1), f"{pongs} pongs for 400 pings (budget 20/s, burst 40)")
        check(1 <= limited <= took + 2, f"{limited} RATE_LIMITED answers for the excess")
    finally:
        d.discard()


@test(timeout=120)
def slow_reader_is_closed():
    # Relay mode: a sender with no rate limit sends into a room where one
    # peer has stopped reading (a chat-client frozen with SIGSTOP: nothing
    # is acknowledged any more) and one reads. chatd must close the frozen
    # one for its queue (--peer-queue-bytes, 1 MiB, after usrsctp's own
    # 1 MiB buffer), before ICE consent would, deliver everything to the
    # reading one, and keep RSS bounded.
    d = Chatd("abuse_slow_reader", "--mode", "relay")
    try:
        reader = Client(d.url + "?room=flood", "--raw")
        frozen = Client(d.url + "?room=flood", "--raw")
        reader.wait_connected()
        frozen.wait_connected()
        frozen.proc.send_signal(signal.SIGSTOP)
        # 400 messages of 8 000 bytes, 50 a second: a reading peer keeps up
        # easily; the frozen one passes 2 MiB after about 260 of them.
        lines = 400
        payload = "x" * 8000
        base = rss(d)
        sender = Client(d.url + "?room=flood", "--raw")
        sender.wait_connected()

        def paced():
            for _ in range(lines):
                sender.send(payload)
                time.sleep(0.02)
        threading.Thread(target=paced, daemon=True).start()
        peak = base
        closed = False
        t0 = time.monotonic()
        while time.monotonic() - t0 < 40:
            time.sleep(0.5)
            peak = max(peak, rss(d))
            if metric(d, "chatd_peers") <= 2:
                closed = True
                break
        took = time.monotonic() - t0
        got = len(reader.wait_lines(lines, 60))
        frozen.proc.send_signal(signal.SIGCONT)
        with open(d.log_path) as f:
            log = f.read()
        figure("slow_reader_is_closed",
               f"{lines} messages of 8 000 bytes (50/s) into a room with a frozen peer: "
               f"{'closed' if closed else 'still open'} after {took:.1f} s; the reading peer got "
               f"{got} of {lines}; RSS grew {(peak - base) / MIB:.1f} MiB")
        check(d.alive(), f"chatd died: {d.tail(5)}")
        check(closed, f"a peer that stopped reading is still open after {took:.0f} s")
        check("too slow to keep up" in log, "the frozen peer was not closed for its queue")
        check(got == lines, f"the reading peer got {got} of {lines}")
        # --peer-queue-bytes 1 MiB plus usrsctp's 1 MiB buffer: a few MiB at most
        check_rss(peak - base < 16 * MIB, f"RSS grew {(peak - base) / MIB:.1f} MiB")
        sender.finish()
        reader.finish()
    finally:
        d.discard()


# --------------------------------------------------------------------------
# 5. forged signatures


async def welcome_of(p, timeout=30):
    """The welcome, past any USER_FETCH_FAILED of the draw (1 in N+1)."""
    deadline = time.monotonic() + timeout
    while True:
        m = json.loads(await asyncio.wait_for(p.queue.get(), max(0.1, deadline - time.monotonic())))
        if m.get("type") == "welcome":
            return m


def forge_main(url, n):
    """Child process: one session sends N posts whose token has a random
    signature; prints 'flooding' when it starts, then a JSON summary."""
    import rtcpeer

    async def body():
        p = rtcpeer.DataChannelPeer(url)
        await p.connect()
        w = await welcome_of(p)
        h, c, s = w["token"].split(".")
        sig = base64.urlsafe_b64encode(os.urandom(len(base64.urlsafe_b64decode(s + "==")))) \
            .rstrip(b"=").decode()
        forged = f"{h}.{c}.{sig}"
        print("flooding", flush=True)
        for i in range(n):
            p.channel.send(json.dumps({"type": "post", "token": forged, "text": f"f{i}",
                                       "ref": str(i)}))
            if i % 200 == 0:
                await asyncio.sleep(0)
        answers = {}
        deadline = time.monotonic() + 30
        seen = 0
        while time.monotonic() < deadline and seen < n:
            try:
                m = json.loads(await asyncio.wait_for(p.queue.get(), 3))
            except asyncio.TimeoutError:
                break
            if m.get("ref") is not None:
                seen += 1
            k = m.get("code") or m.get("type")
            if k == "message" and m.get("source") != "manual":
                k = "message " + str(m.get("source"))  # an auto post: not a forged one
            answers[k] = answers.get(k, 0) + 1
        print(json.dumps(answers), flush=True)
        await p.close()
    asyncio.run(body())


@test(timeout=150)
def forged_signature_posts():
    import rtcpeer
    n = int(os.environ.get("ABUSE_FORGED", "10000"))
    d = start_chatd("abuse_forged", *QUIET)
    try:
        async def rtts(p, k):
            out = []
            for i in range(k):
                t = time.monotonic()
                p.channel.send(json.dumps({"type": "ping", "ref": f"r{i}"}))
                while True:
                    m = json.loads(await asyncio.wait_for(p.queue.get(), 30))
                    if m.get("type") == "pong" and m.get("ref") == f"r{i}":
                        break
                out.append(time.monotonic() - t)
                await asyncio.sleep(0.1)
            return out

        async def body():
            p = rtcpeer.DataChannelPeer(d.url)
            await p.connect()
            await welcome_of(p)
            base = await rtts(p, 20)
            child = await asyncio.create_subprocess_exec(
                PY, os.path.abspath(__file__), "--forge", d.url, str(n),
                stdout=asyncio.subprocess.PIPE)
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            check(line.strip() == b"flooding", f"flooder: {line!r}")
            during = await rtts(p, 20)
            summary = await asyncio.wait_for(child.stdout.readline(), 60)
            await child.wait()
            await p.close()
            return base, during, json.loads(summary or b"{}")
        base, during, answers = run_async(body(), 130)
        mb, md = statistics.median(base), statistics.median(during)
        ratio = md / max(mb, 0.002)   # a floor of 2 ms: loopback noise below it
        log_lines = sum(1 for ln in open(d.log_path, errors="replace") if "token" in ln.lower())
        figure("forged_signature_posts",
               f"{n} forged posts: answers {answers}; other peer's ping median "
               f"{mb * 1000:.1f} ms before, {md * 1000:.1f} ms during (ratio {ratio:.1f}); "
               f"{log_lines} log lines about tokens")
        check(d.alive(), f"chatd died: {d.tail(5)}")
        check(answers.get("message", 0) == 0, f"a forged post was delivered: {answers}")
        check(ratio <= FORGE_RATIO, f"round trip rose {ratio:.1f} times (at most {FORGE_RATIO})")
        check(log_lines <= 100, f"{log_lines} log lines about tokens for {n} forged posts")
    finally:
        d.discard()


# --------------------------------------------------------------------------
# 9. display spoofing


SPOOFS = ["\x1b[2K\x1b[1A fake line", "admin\u202egnp.exe", "a\u0085b", "x\u2066y\u2069",
          "bell\x07", "\x9b31mred"]


@test(timeout=90)
def control_and_bidi_posts_refused():
    d = start_chatd("abuse_spoof", *QUIET)
    try:
        a, b = distinct_clients(d.url, 2)
        for i, text in enumerate(SPOOFS):
            a.send(text)
            e = a.wait_msg(lambda m: m.get("type") == "error" and m.get("ref") is not None
                           and m.get("code") in ("BAD_REQUEST", "RATE_LIMITED")
                           or m.get("type") == "message" and m.get("text") == text, 10,
                           f"an answer to spoof {i}")
            check(e.get("type") == "error" and e["code"] == "BAD_REQUEST",
                  f"spoof {text!r} answered {e}")
            time.sleep(0.05)
        a.send("plain after the spoofs")
        b.wait_msg(lambda m: m.get("type") == "message" and m.get("text") == "plain after "
                   "the spoofs", 10, "the plain post")
        leaked = [m for m in b.msgs() if m.get("type") == "message" and m.get("text") in SPOOFS]
        check(not leaked, f"spoofs delivered: {leaked}")
        for c in (a, b):
            check(c.finish() == 0, "exit status")
    finally:
        d.stop()
    # chat-client never prints a peer's control characters raw (relay: the
    # bytes are the peer's own, nothing on the server filters them)
    import rtcpeer
    r = Chatd("abuse_spoof_relay", "--mode", "relay")
    try:
        raw = Client(r.url + "?room=s", "--raw")
        js = Client(r.url + "?room=s", "--raw", "--json")
        raw.wait_connected()
        js.wait_connected()

        async def body():
            p = rtcpeer.DataChannelPeer(r.url, "?room=s")
            await p.connect()
            for t in SPOOFS:
                p.channel.send(t)
            p.channel.send(json.dumps({"t": "\x1b]0;title\x07\u202e"}))
            await asyncio.sleep(1)
            await p.close()
        run_async(body(), 30)
        lines = raw.wait_lines(len(SPOOFS) + 1, 10)
        jl = js.wait_lines(len(SPOOFS) + 1, 10)
        for ln in lines + jl:
            bad = [ch for ch in ln if ord(ch) < 0x20 and ch != "\t" or 0x7f <= ord(ch) <= 0x9f
                   or 0x202a <= ord(ch) <= 0x202e or 0x2066 <= ord(ch) <= 0x2069]
            check(not bad, f"chat-client printed {bad!r} raw in {ln!r}")
        check(lines[0] == "\u241b[2K\u241b[1A fake line", f"shown as {lines[0]!r}")
        check(json.loads(jl[-1]) == {"t": "\x1b]0;title\x07\u202e"},
              f"--json changed the object: {jl[-1]!r}")
        figure("control_and_bidi_posts_refused", f"{len(SPOOFS)} spoofs refused; chat-client "
               f"shows {lines[0]!r}")
        raw.finish()
        js.finish()
    finally:
        r.stop()


# --------------------------------------------------------------------------
# 6. history over 64 KiB


@test(timeout=120)
def escaped_history_still_delivered():
    d = start_chatd("abuse_history", *QUIET)
    try:
        clients = distinct_clients(d.url, 3)
        text = "\U0001F600" * 2000   # 8 000 bytes of UTF-8 each
        sent = 0
        for c in clients:
            for i in range(5):
                c.send(f"{i}" + text[1:])
                sent += 1
        last = clients[-1]
        for c in clients:   # every post answered (delivered, or refused)
            wait_until(lambda: sum(1 for m in c.msgs() if m.get("ref") is not None) >= 5, 20,
                       "an answer to each long post", interval=0.3)
        delivered = [m for m in last.msgs() if m.get("type") == "message"]
        j = JsonClient(d.url)
        w = j.welcome(20)
        try:
            h = j.wait_msg(lambda m: m.get("type") == "history", 10, "history")
        except Failure:
            h = None
        size = len(json.dumps(h, ensure_ascii=False, separators=(",", ":")).encode()) if h else 0
        figure("escaped_history_still_delivered",
               f"{len(delivered)} posts of 2 000 four-byte characters; the joiner got welcome "
               f"({len(json.dumps(w).encode())} bytes) and "
               + (f"history of {len(h['messages'])} messages, {size} bytes, more="
                  f"{h.get('more')}" if h else "no history"))
        check(h is not None, "the joiner got welcome and never a history")
        check(size <= 65536, f"history of {size} bytes")
        # the newest message anyone was sent (three posters: the last one's
        # own list may still lack another's last post)
        newest = max(int(m["id"]) for c in clients for m in c.msgs()
                     if m.get("type") == "message")
        check(h["messages"] and int(h["messages"][-1]["id"]) == newest,
              "the newest message is not kept")
        check(h.get("more") is True, "history left messages out without \"more\":true")
        for c in clients + [j]:
            c.finish()
    finally:
        d.stop()


# --------------------------------------------------------------------------
# 7. database down under posting


@test(timeout=150)
def database_down_under_posting():
    pg = PrivatePostgres()
    d = None
    try:
        d = start_chatd("abuse_db_down", "--database-url", pg.url, "--auto-post-max-ms", "20")
        a, b = distinct_clients(d.url, 2)
        time.sleep(1)
        base = rss(d)
        pg.stop()
        t0 = time.monotonic()
        peak_rss, peak_depth = base, 0.0
        while time.monotonic() - t0 < DB_DOWN_S:
            time.sleep(1)
            peak_rss = max(peak_rss, rss(d))
            m = d.metrics()
            peak_depth = max(peak_depth, m.get("chatd_db_queue_depth", 0))
        queue_bytes = d.metrics().get("chatd_db_queue_bytes")
        health = d.health()
        pg.start()
        wait_until(lambda: metric(d, "chatd_db_queue_depth") == 0, 60, "the queue drained")
        delivered = {m["id"] for m in b.msgs() if m.get("type") == "message"}
        refused = sum(1 for m in a.msgs() + b.msgs() if m.get("code") == "UNAVAILABLE")
        for c in (a, b):
            c.finish()
        check(d.term() == 0, "chatd exit status")
        r = subprocess.run(["psql", pg.url, "-Atc", "select id from messages"],
                           capture_output=True, text=True, timeout=30)
        missing = delivered - set(r.stdout.split())
        figure("database_down_under_posting",
               f"PostgreSQL down {DB_DOWN_S:.0f} s: queue peak {peak_depth:.0f} rows"
               + (f", {queue_bytes:.0f} bytes" if queue_bytes is not None else "")
               + f", RSS {base / MIB:.1f} -> {peak_rss / MIB:.1f} MiB, health {health}; "
               f"{len(delivered)} delivered, {len(missing)} missing, {refused} UNAVAILABLE")
        check(not missing, f"{len(missing)} delivered messages lost")
        check_rss(peak_rss - base < 64 * MIB, f"RSS grew {(peak_rss - base) / MIB:.1f} MiB")
        check(health[1].get("database") in ("degraded", "down"), f"health {health}")
    finally:
        if d is not None:
            d.discard()
        pg.remove()


# --------------------------------------------------------------------------
# 8. slow HTTP clients


@test(timeout=120)
def slow_http_clients():
    n = int(os.environ.get("ABUSE_SLOW_HTTP", "1000"))
    d = start_chatd("abuse_slow_http", *QUIET)
    port = url_port(d.url)
    socks = []
    try:
        for i in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.bind(("127.0.0.2", 0))
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(1)
        for s in socks:
            try:
                s.send(b"GET /api/health HTTP/1.1\r\nHo")
            except OSError:
                pass
        ok, tried = 0, 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8:
            tried += 1
            st, _ = request(port, b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close"
                                  b"\r\n\r\n", "127.0.0.1", timeout=10)
            ok += st == 200
            for s in socks[:50]:
                try:
                    s.send(b"s")
                except OSError:
                    pass
            time.sleep(0.3)
        held = 0
        for s in socks:   # open and unanswered: recv would block
            try:
                s.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                held += 1
            except OSError:
                pass
        figure("slow_http_clients", f"{n} slow clients from 127.0.0.2, {held} still held by "
               f"chatd after 8 s; /api/health from 127.0.0.1: {ok} of {tried} answered 200")
        check(ok == tried, f"/api/health answered {ok} of {tried} times")
        check(held <= n // 10, f"chatd holds {held} slow connections from one address")
    finally:
        for s in socks:
            s.close()
        d.discard()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--forge":
        forge_main(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    run(fixtures=[harness.shared_jsonplaceholder()])
