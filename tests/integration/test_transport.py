#!/usr/bin/python3
"""Integration: chat-client <-> chatd (relay mode) over real WebRTC on
127.0.0.1. Each test starts its own chatd.

    /usr/bin/python3 tests/integration/test_transport.py [TEST...]
"""

import json
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (CHAT_CLIENT_BIN, SCALE, Chatd, check, http, raw_http,  # noqa: E402
                     run, test, url_port, wait_until)
import harness  # noqa: E402


def Client(url, *args):
    """chat-client in plain-text mode, as the relay speaks."""
    return harness.Client(url, "--raw", *args)

RELAY = ("--mode", "relay")
OFFER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus", "sdp",
                     "browser_offer.sdp")


def n(count):
    """Scaled count: sanitizer runs use fewer iterations."""
    return max(1, int(count / SCALE))


def payloads(count, seed):
    """Messages of 1 byte to 64 KiB (log-uniform sizes, both ends included)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i == 0:
            size = 1
        elif i == 1:
            size = 65536
        else:
            size = max(1, int(65536 ** rng.random()))
        tag = f"{seed}:{i}:"
        body = (tag * (size // len(tag) + 1))[:size]
        out.append(body)
    return out


@test
def channel_opens():
    d = Chatd("channel_opens", *RELAY)
    c = Client(d.url)
    c.wait_connected()
    check(c.finish() == 0, f"exit status after end of input: {c.err_lines}")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test
def a_server_with_two_addresses_is_reached_without_retransmission():
    """chatd offers two host candidates (as make run does on a machine with
    an interface besides loopback). chat-client checks both and must
    nominate only the pair it picked: when every first check nominated,
    chatd sent DTLS on the pair nominated last while chat-client listened on
    the one that answered first, and the handshake waited on retransmissions
    (6 s) until a consent check nominated again."""
    d = Chatd("two_addresses", *RELAY, "--ice-address", "127.0.0.2", "--log-level", "debug")
    for _ in range(3):
        c = Client(d.url)
        c.wait_connected()
        check(c.finish() == 0, f"exit status after end of input: {c.err_lines}")
    log = d.tail(10000)
    check("DTLS connected" in log, "no DTLS handshake in chatd's debug log")
    check("DTLS handshake timer (retransmission)" not in log,
          "chatd retransmitted its DTLS handshake: the two sides used different pairs")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=600)
def ten_thousand_messages_each_way_in_order():
    # Ordering under load is the rule here, not the slow-reader limit (1 MiB
    # by default): the queue may hold the old 32 MiB.
    d = Chatd("ten_thousand", *RELAY, "--peer-queue-bytes", str(32 * 1024 * 1024))
    a = Client(d.url)
    a.wait_connected()
    b = Client(d.url)
    b.wait_connected()
    count = n(10000)
    to_b = payloads(count, 1)
    to_a = payloads(count, 2)
    # In windows, as a flow-controlled application would: the relay closes a
    # peer that falls --peer-queue-bytes behind, and a test must not depend on the
    # receiver always keeping up with the sender on a busy machine.
    window = 500
    for start in range(0, count, window):
        wa = a.send_many(to_b[start:start + window])
        wb = b.send_many(to_a[start:start + window])
        want = min(count, start + window)
        got_b = b.wait_lines(want, timeout=120)
        got_a = a.wait_lines(want, timeout=120)
        wa.join(5)
        wb.join(5)
        check(len(got_b) >= want and len(got_a) >= want,
              f"window at {start}: a has {len(got_a)}, b has {len(got_b)} of {want}; "
              f"chatd: {d.tail(3)}")
    for name, got, want in (("b", got_b, to_b), ("a", got_a, to_a)):
        check(len(got) == len(want), f"{name} received {len(got)} of {len(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            check(g == w, f"{name}: message {i} differs (len {len(g)} vs {len(w)})")
    check(a.finish() == 0 and b.finish() == 0, "clients exit 0")
    check(d.stop() == 0, "chatd exits 0")


@test
def oversize_message_refused_by_client_not_crash():
    d = Chatd("oversize", *RELAY)
    a = Client(d.url)
    a.wait_connected()
    b = Client(d.url)
    b.wait_connected()
    a.send("x" * 65537)
    a.send("after")
    lines = b.wait_lines(1, timeout=20)
    check(lines == ["after"], f"b got {lines[:1]!r}...")
    check(a.finish() == 0, "client keeps working after a refused message")
    check(any("over the 65536-byte limit" in e for e in a.err_lines),
          f"clear error line: {a.err_lines}")
    b.finish()
    check(d.alive(), "chatd still running")
    check(d.stop() == 0, "chatd exits 0")


@test(timeout=600)
def open_close_cycles_leak_nothing():
    d = Chatd("churn", *RELAY)
    # one warm-up cycle: libraries open their lazy descriptors once
    c = Client(d.url)
    c.wait_connected()
    check(c.finish() == 0, "warm-up cycle")
    time.sleep(0.5)
    base_fds = d.fd_count()
    base_threads = d.thread_count()
    cycles = n(200)
    done = [0]
    lock = threading.Lock()

    def worker(k):
        while True:
            with lock:
                if done[0] >= cycles:
                    return
                done[0] += 1
            cl = Client(d.url, "--quiet")
            cl.send(f"cycle {k}")
            rc = cl.finish()
            if rc != 0:
                raise RuntimeError(f"cycle exit {rc}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.time() + 20
    while time.time() < deadline:
        m = d.metrics()
        if m.get("chatd_peers") == 0 and m.get("chatd_peer_objects") == 0 and \
                d.fd_count() <= base_fds:
            break
        time.sleep(0.2)
    m = d.metrics()
    check(m.get("chatd_peers") == 0, f"sessions left: {m}")
    check(m.get("chatd_peer_objects") == 0, f"peer objects left: {m}")
    check(m.get("chatd_sctp_associations", 0) == 0, f"SCTP associations left: {m}")
    # The /metrics request just made holds a socket until chatd closes its
    # side; count descriptors once that has had its moment, without another
    # request in between.
    deadline = time.time() + 5
    while d.fd_count() > base_fds and time.time() < deadline:
        time.sleep(0.1)
    check(d.fd_count() <= base_fds, f"descriptors {d.fd_count()} > baseline {base_fds}")
    check(d.thread_count() <= base_threads, f"threads {d.thread_count()} > {base_threads}")
    check(d.stop() == 0, "chatd exits 0 (under ASan: no leak at exit)")


@test(timeout=300)
def fifty_peers_receive_every_message():
    d = Chatd("fifty", *RELAY)
    peers = []
    for _ in range(50):
        c = Client(d.url, "--quiet")
        peers.append(c)
    for c in peers:
        c.wait_connected(timeout=60) if c.connected else None
    # --quiet hides the "connected" line: wait on the server's count instead
    deadline = time.time() + 60
    while time.time() < deadline and d.metrics().get("chatd_peers", 0) < 50:
        time.sleep(0.2)
    check(d.metrics().get("chatd_peers") == 50, f"peers open: {d.metrics()}")
    time.sleep(0.5)
    sender = peers[0]
    msgs = [f"broadcast {i}" for i in range(100)]
    sender.send_many(msgs).join()
    for i, c in enumerate(peers[1:], 1):
        got = c.wait_lines(100, timeout=60)
        check(got[:100] == msgs, f"peer {i} got {len(got)} lines, first diff in order/content")
    check(sender.lines == [], "the sender does not get its own messages")
    for c in peers:
        c.finish()
    check(d.stop() == 0, "chatd exits 0")


@test
def both_dtls_roles():
    d = Chatd("dtls_roles", *RELAY)
    for role in ("active", "passive", "auto"):
        a = Client(d.url, "--dtls-role", role)
        a.wait_connected()
        b = Client(d.url)
        b.wait_connected()
        a.send(f"role {role}")
        got = b.wait_lines(1, timeout=20)
        check(got == [f"role {role}"], f"{role}: got {got}")
        check(a.finish() == 0 and b.finish() == 0, f"{role}: clean exit")
    check(d.stop() == 0, "chatd exits 0")


@test
def http_errors_are_json_and_server_keeps_serving():
    d = Chatd("http_errors", *RELAY, "--max-peers", "1")
    api = d.url + "api/rtc"
    sdp_ct = {"Content-Type": "application/sdp"}

    def err(status, body, code):
        doc = json.loads(body)
        check(doc["error"]["code"] == code, f"code {doc} != {code}")
        check(doc["error"]["message"], "message present")

    s, h, b = http("POST", api, b"v=0\r\nthis is not an offer\r\n", sdp_ct)
    check(s == 400, f"malformed offer: {s}")
    err(s, b, "BAD_SDP")
    check(h.get("Content-Type") == "application/json", f"content type {h}")
    with open(OFFER, "rb") as f:
        good = f.read()
    broken = good.replace(b"a=fingerprint:", b"a=nofingerprint:")
    s, _, b = http("POST", api, broken, sdp_ct)
    check(s == 400 and b"fingerprint" in b, f"missing fingerprint: {s} {b}")
    s, _, b = http("POST", api, b"v=0\r\n" + b"a" * (70 * 1024), sdp_ct)
    check(s == 413, f"oversize: {s}")
    err(s, b, "TOO_LARGE")
    s, _, b = http("POST", api, good, {"Content-Type": "text/plain"})
    check(s == 415, f"wrong type: {s}")
    s, _, b = http("GET", d.url + "api/nothing")
    check(s == 404, f"unknown path: {s}")
    err(s, b, "NOT_FOUND")
    s, _, b = http("DELETE", api + "/0123456789abcdef")
    check(s == 404, f"delete unknown: {s}")
    s, _, b = http("GET", d.url + "api/health")
    check(s == 200 and json.loads(b)["status"] == "ok", f"health {s} {b}")
    s, _, b = http("GET", d.url)
    check(s == 200 and b"<html" in b.lower(), f"GET / {s}")
    # garbage on the socket, and a request cut short, do not hurt
    port = url_port(d.url)
    raw_http(port, b"\x00\x01\x02 garbage \r\n\r\n")
    raw_http(port, b"POST /api/rtc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nv=0", 1)
    # capacity: one peer fits, the next is told 503 AT_CAPACITY
    c = Client(d.url)
    c.wait_connected()
    s, _, b = http("POST", api, good, sdp_ct)
    check(s == 503, f"at capacity: {s} {b}")
    err(s, b, "AT_CAPACITY")
    check(c.finish() == 0, "client fine")
    # and after all that, once its one slot is free, a client still connects
    wait_until(lambda: d.metrics().get("chatd_peers") == 0, 10, "the peer slot freed")
    c2 = Client(d.url)
    c2.wait_connected()
    check(c2.finish() == 0, "server keeps serving")
    check(d.stop() == 0, "chatd exits 0")


@test
def delete_ends_a_session():
    d = Chatd("delete", *RELAY)
    c = Client(d.url)
    c.wait_connected()
    sid = [e for e in c.err_lines if "session" in e][0].split("session ")[1].rstrip(")")
    s, _, _ = http("DELETE", d.url + "api/rtc/" + sid)
    check(s == 204, f"DELETE: {s}")
    rc = c.proc.wait(20)
    check(rc == 1, f"client notices the end: {rc} {c.err_lines}")
    check(any("connection lost" in e or "closed" in e for e in c.err_lines), str(c.err_lines))
    s, _, _ = http("DELETE", d.url + "api/rtc/" + sid)
    check(s == 404, "second DELETE is 404")
    d.stop()


@test
def client_cannot_connect_says_so():
    with subprocess.Popen([CHAT_CLIENT_BIN, "--url", "http://127.0.0.1:9/", "--timeout", "3"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as p:
        out, err = p.communicate(timeout=20)
    lines = err.decode().strip().splitlines()
    check(p.returncode == 1, f"exit status {p.returncode}")
    check(len(lines) == 1 and "cannot reach" in lines[0], f"one clear line: {lines}")
    p = subprocess.run([CHAT_CLIENT_BIN], capture_output=True, timeout=10)
    check(p.returncode == 2 and b"--url" in p.stderr, "missing --url is a usage error")


@test
def bad_flags_exit_2_and_help_lists_every_flag():
    from harness import CHATD_BIN
    p = subprocess.run([CHATD_BIN, "--max-peers", "zero"], capture_output=True, timeout=10)
    check(p.returncode == 2, f"bad value exit {p.returncode}")
    check(len(p.stderr.decode().strip().splitlines()) == 1, f"one line: {p.stderr}")
    p = subprocess.run([CHATD_BIN, "--bogus"], capture_output=True, timeout=10)
    check(p.returncode == 2 and b"unknown option" in p.stderr, f"{p.stderr}")
    p = subprocess.run([CHATD_BIN, "--help"], capture_output=True, timeout=10)
    check(p.returncode == 0, "help exit 0")
    for flag, env in (("--listen", "CHATD_LISTEN"), ("--public-url", "CHATD_PUBLIC_URL"),
                      ("--ice-address", "CHATD_ICE_ADDRESSES"), ("--api-url", "JSONPLACEHOLDER_URL"),
                      ("--database-url", "DATABASE_URL"), ("--data-dir", "CHATD_DATA_DIR"),
                      ("--jwt-key", "CHATD_JWT_KEY"), ("--jwt-ttl", "CHATD_JWT_TTL"),
                      ("--auto-post-max-ms", "CHATD_AUTO_POST_MAX_MS"), ("--seed", "CHATD_SEED"),
                      ("--max-peers", "CHATD_MAX_PEERS")):
        check(flag.encode() in p.stdout and env.encode() in p.stdout, f"--help lacks {flag}")
    p = subprocess.run([CHATD_BIN, "--max-peers", "5"], capture_output=True, timeout=10,
                       env=dict(os.environ, CHATD_LISTEN="nonsense"))
    check(p.returncode == 2 and b"CHATD_LISTEN" in p.stderr, f"env error names the var: {p.stderr}")


@test
def version_is_the_version_file_everywhere():
    """--version of chatd, chat-client and chat-bench, /api/health and
    /metrics' chatd_build_info all say what VERSION says (issue 13)."""
    from harness import CHATD_BIN, ROOT
    with open(os.path.join(ROOT, "VERSION")) as f:
        version = f.read().strip()
    p = subprocess.run([CHATD_BIN, "--version"], capture_output=True, timeout=10, text=True)
    check(p.returncode == 0 and p.stdout == f"chatd {version}\n" and p.stderr == "",
          f"chatd --version: {p.returncode} {p.stdout!r} {p.stderr!r}")
    p = subprocess.run([CHATD_BIN, "--help"], capture_output=True, timeout=10, text=True)
    check("--version" in p.stdout and "--log-format" in p.stdout and "CHATD_LOG_FORMAT" in p.stdout,
          "--help lacks --version or --log-format")
    for tool in (CHAT_CLIENT_BIN, os.path.join(os.path.dirname(CHAT_CLIENT_BIN), "chat-bench")):
        name = os.path.basename(tool)
        p = subprocess.run([tool, "--version"], capture_output=True, timeout=10, text=True)
        check(p.returncode == 0 and p.stdout == f"{name} (chatd) {version}\n",
              f"{name} --version: {p.returncode} {p.stdout!r} {p.stderr!r}")
        p = subprocess.run([tool, "--help"], capture_output=True, timeout=10, text=True)
        check("--version" in p.stdout, f"{name} --help lacks --version")
    d = Chatd("version", *RELAY)
    s, _, b = http("GET", d.url + "api/health")
    body = json.loads(b)
    check(s == 200 and list(body) == ["status", "database", "api", "version"] and
          body["version"] == version, f"health {s} {b}")
    _, _, m = http("GET", d.url + "metrics")
    check(f'\nchatd_build_info{{version="{version}"}} 1\n' in m.decode() and
          "# TYPE chatd_build_info gauge" in m.decode(), "no chatd_build_info in /metrics")
    check(d.stop() == 0, "chatd exit status")


@test
def json_log_lines_all_parse():
    """--log-format json at --log-level debug: a session set up, messages
    both ways, a hang-up, requests with hostile paths and headers, a
    SIGTERM; every line chatd writes on standard error is one JSON object
    with ts, level, module and msg."""
    d = Chatd("json_log", *RELAY, "--log-format", "json", "--log-level", "debug")
    a, b = Client(d.url), Client(d.url)
    a.wait_connected()
    b.wait_connected()
    a.send("hello \u202e\u00e9 \"quoted\" \\ back")
    check(any("hello" in line for line in b.wait_lines(1, 10)), f"not relayed: {b.lines}")
    port = url_port(d.url)
    raw_http(port, b"GET /api/\x1b[2J\xff\xfe\"} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             b"User-Agent: \xc0\xaf\x00\x7f\r\n\r\n")
    raw_http(port, b"POST /api/rtc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             b"Content-Type: application/sdp\r\n"
             b"Content-Length: 8\r\n\r\nv=0\xed\xa0\x80\x01\n")
    check(a.finish() == 0 and b.finish() == 0, "clients exit 0")
    check(d.stop() == 0, "chatd exit status")
    with open(d.log_path, "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    check(lines[-1] == b"", "the log ends with a newline")
    modules, levels = set(), set()
    for i, line in enumerate(lines[:-1]):
        try:
            o = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise harness.Failure(f"line {i + 1} is not JSON ({e}): {line[:300]!r}")
        check(isinstance(o, dict) and list(o) == ["ts", "level", "module", "msg"] and
              all(isinstance(v, str) for v in o.values()), f"line {i + 1}: {o}")
        check(o["level"] in ("debug", "info", "warn", "error"), f"level {o}")
        modules.add(o["module"])
        levels.add(o["level"])
    msgs = [json.loads(line)["msg"] for line in lines[:-1]]
    check(len(msgs) >= 10, f"only {len(msgs)} lines")
    check(any("session" in m and "created" in m for m in msgs), f"no session line: {modules}")
    check(any("stopping" in m for m in msgs) and "debug" in levels and "info" in levels,
          f"levels {levels}")


if __name__ == "__main__":
    run()
