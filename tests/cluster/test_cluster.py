#!/usr/bin/python3
"""The cluster suite (issue 12): three chatd nodes on one NATS JetStream
server and one PostgreSQL database, clients spread over them: aiortc peers,
chat-client (the C client) and the web client in headless Chromium.

One NATS server (`nats-server -js -sd DIR`), one private PostgreSQL
(scripts/pg.sh), the real JSONPlaceholder and three nodes (A, B, C: their
own --listen and --rtc-port, one --jwt-key, one --public-url) are started
once, by the fixture, for every test. Each test uses rooms of its own. A
test that kills a node or NATS starts it again before it ends; those
processes run in the runner's process group (not the test's), so they
outlive the test and are stopped by the fixture, which checks that every
node exits 0 on SIGTERM.

Runs inside scripts/netns.sh (it re-executes itself there): Chromium
gathers no ICE candidate on loopback, so node A offers the namespace's veth
address, 10.77.0.1, for the browser besides 127.0.0.1 (aiortc); B and C
offer 127.0.0.1 only (aiortc, chat-client). Every node has --trusted-proxy
127.0.0.1: the front-door test runs nginx (deploy/nginx/chatd-cluster.conf
filled in by scripts/nginx-conf.sh) on the veth address, and nginx reaches
the nodes from 127.0.0.1.
Needs root for the namespace, nats-server, PostgreSQL 15, nginx and openssl
(scripts/deps.sh installs them); a missing one fails the suite, it is not
skipped.

    /usr/bin/python3 tests/cluster/test_cluster.py [TEST...]

Environment: CHATD_BIN, CHAT_CLIENT_BIN, TEST_LOG_DIR (the nodes' and
NATS's logs: cluster-node-*.chatd.log, cluster-nats.log; nginx's:
cluster-nginx-error.log, cluster-nginx-access.log), ARTIFACTS_DIR
(the browser's screenshot), CLUSTER_LOAD_PEERS (peers per node in the load
test, 4), CLUSTER_LOAD_POSTS (posts per peer, 50).
"""

import asyncio
import base64
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
from http.client import HTTPConnection

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
if not os.environ.get("CHATD_CLUSTER_IN_NETNS"):
    env = dict(os.environ, CHATD_CLUSTER_IN_NETNS="1")
    sys.exit(subprocess.call([os.path.join(ROOT, "scripts", "netns.sh"), sys.executable,
                              os.path.abspath(__file__), *sys.argv[1:]], env=env))

sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import harness  # noqa: E402
from harness import (CHATD_BIN, LOG_DIR, SCALE, Client, Failure, Fixture, JsonClient,  # noqa: E402
                     check, free_port, http, pid_alive, run, test, wait_until)
from chatpeer import Peer, aapi, api, arun, is_msg  # noqa: E402

VETH = os.environ.get("NETNS_ADDR", "10.77.0.1")
ARTIFACTS = os.environ.get("ARTIFACTS_DIR", os.path.join(ROOT, "build", "artifacts"))
AUTO_MS = "2000"     # every connected user auto-posts every 0-2 s: traffic from every node
POST_RATE = "100"    # the load test posts faster than the default 1/s per user
LOAD_PEERS = max(1, int(int(os.environ.get("CLUSTER_LOAD_PEERS", "4")) / SCALE))
LOAD_POSTS = max(5, int(int(os.environ.get("CLUSTER_LOAD_POSTS", "50")) / SCALE))
SIGKILL_STATUS = 128 + signal.SIGKILL

JP = harness.shared_jsonplaceholder()


# --------------------------------------------------------------------------
# processes that outlive the test that started them


class Proc:
    """A server run under a small sh wrapper that writes its pid and, when
    it ends, its exit status to files: any process can signal it and learn
    how it ended, also when a test (another process than the fixture's)
    started it again. It joins GROUP, the runner's process group: a test's
    end does not kill it, the runner's does."""

    WRAP = ('"$@" >"$CP_OUT" 2>>"$CP_LOG" </dev/null & echo $! >"$CP_PID.tmp" && '
            'mv "$CP_PID.tmp" "$CP_PID"; wait $!; echo $? >"$CP_RC.tmp" && mv "$CP_RC.tmp" "$CP_RC"')

    def __init__(self, name, argv, work, group):
        self.name, self.argv, self.group = name, list(argv), group
        self.pidfile = os.path.join(work, name + ".pid")
        self.rcfile = os.path.join(work, name + ".rc")
        self.outfile = os.path.join(work, name + ".out")
        self.logfile = os.path.join(LOG_DIR, f"cluster-{name}.log")

    def spawn(self, fresh=False):
        """FRESH: the log starts empty (the fixture's first start)."""
        if fresh and os.path.exists(self.logfile):
            os.remove(self.logfile)
        for f in (self.pidfile, self.rcfile):
            if os.path.exists(f):
                os.remove(f)
        with open(self.logfile, "a") as f:
            f.write(f"==== {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n")
        group = self.group
        subprocess.Popen(["sh", "-c", self.WRAP, "sh", *self.argv],
                         env=dict(os.environ, CP_OUT=self.outfile, CP_LOG=self.logfile,
                                  CP_PID=self.pidfile, CP_RC=self.rcfile),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, preexec_fn=lambda: os.setpgid(0, group))
        wait_until(lambda: os.path.exists(self.pidfile), 10, f"{self.name}'s pid file")

    @property
    def pid(self):
        with open(self.pidfile) as f:
            return int(f.read())

    def status(self):
        """The exit status, or None while it runs."""
        try:
            with open(self.rcfile) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def alive(self):
        return self.status() is None and pid_alive(self.pid)

    def kill(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        try:
            wait_until(lambda: self.status() is not None, timeout, f"{self.name}'s exit")
        except Failure:
            raise Failure(f"{self.name} still running {timeout} s after the signal")
        return self.status()

    def stop(self, timeout=30):
        """SIGTERM (SIGKILL after TIMEOUT); its exit status."""
        if self.status() is None:
            try:
                self.kill(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                return self.wait_exit(timeout)
            except Failure:
                self.kill(signal.SIGKILL)
                self.wait_exit(10)
                raise
        return self.status()

    def tail(self, n=15):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class Nats(Proc):
    def __init__(self, work, group):
        self.port, self.mport = free_port(), free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        super().__init__("nats", ["nats-server", "-js", "-sd", os.path.join(work, "nats"),
                                  "-a", "127.0.0.1", "-p", str(self.port),
                                  "-m", str(self.mport)], work, group)

    def start(self, fresh=False):
        """Starts it (again: the same port and storage) and waits until
        JetStream answers."""
        self.spawn(fresh)

        def ready():
            check(self.status() is None, f"nats-server exited {self.status()}: {self.tail()}")
            try:
                st, _, body = http("GET", f"http://127.0.0.1:{self.mport}/healthz"
                                   "?js-enabled-only=true", timeout=2)
            except OSError:
                return False
            return st == 200 and json.loads(body).get("status") == "ok"
        wait_until(ready, 20, "nats-server with JetStream")


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node(Proc):
    """One chatd of the cluster. URL is its own address (the "listening on"
    line names the shared public URL)."""

    def __init__(self, letter, node_id, port, argv_common, work, group):
        self.letter, self.node_id = letter, node_id
        self.port, self.rtc_port = port, free_udp_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        argv = [CHATD_BIN, "--listen", f"127.0.0.1:{self.port}", "--rtc-port",
                str(self.rtc_port), "--node-id", node_id,
                "--data-dir", os.path.join(work, "data-" + letter), *argv_common]
        if os.environ.get("CHATD_LOG_LEVEL"):
            argv += ["--log-level", os.environ["CHATD_LOG_LEVEL"]]
        super().__init__(f"node-{letter}", argv, work, group)
        self.logfile = os.path.join(LOG_DIR, f"cluster-node-{letter}.chatd.log")

    def start(self, wait_healthy=True, fresh=False):
        self.spawn(fresh)

        def listening():
            check(self.status() is None,
                  f"node {self.letter} exited {self.status()} at start: {self.tail()}")
            try:
                with open(self.outfile) as f:
                    return "listening on" in f.read()
            except OSError:
                return False
        wait_until(listening, 30, f"node {self.letter}'s listening line")
        if wait_healthy:
            self.wait_health(200, "ok", 30)

    def health(self):
        try:
            st, _, body = http("GET", self.url + "api/health", timeout=5)
            return st, json.loads(body)
        except (OSError, ValueError) as e:
            return None, {"error": str(e)}

    def wait_health(self, status, cluster, timeout):
        """Waits until /api/health answers STATUS with "cluster": CLUSTER;
        returns the seconds it took."""
        got = {}
        t0 = time.monotonic()

        def ok():
            got["h"] = self.health()
            return got["h"][0] == status and got["h"][1].get("cluster") == cluster
        try:
            wait_until(ok, timeout * SCALE, "health", interval=0.2)
        except Failure:
            raise Failure(f"node {self.letter}: /api/health is {got.get('h')} after {timeout} s, "
                          f"want {status} with cluster {cluster!r}; log: {self.tail(5)}")
        return time.monotonic() - t0

    def metric(self, name):
        st, _, body = http("GET", self.url + "metrics")
        check(st == 200, f"GET /metrics: {st}")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


class Cluster(Fixture):
    """PostgreSQL, NATS and nodes A, B, C, started once for the suite."""

    check = "every node exits 0 on SIGTERM at the end"

    def start(self):
        try:
            return self._start()
        except BaseException:
            try:
                self.stop()
            except Failure:
                pass
            raise

    def _start(self):
        self.group = os.getpgrp()
        self.work = tempfile.mkdtemp(prefix="chatd-cluster-")
        os.chmod(self.work, 0o755)
        os.makedirs(LOG_DIR, exist_ok=True)
        for tool in ("nats-server", "psql"):
            if not shutil.which(tool):
                raise Failure(f"{tool} is not installed (scripts/deps.sh installs it)")
        # PostgreSQL: pg_ctl leaves our process group, so a watchdog stops it
        # if the runner dies without its teardown (a suite timeout).
        self.pg_dir = os.path.join(self.work, "pg")
        r = subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "start", self.pg_dir,
                            str(free_port())], capture_output=True, text=True, timeout=90)
        if r.returncode != 0:
            raise Failure(f"PostgreSQL did not start: {r.stderr.strip()[-300:]}")
        self.pg_url = r.stdout.strip().splitlines()[-1]
        subprocess.Popen(["sh", "-c", 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; '
                          '"$2" stop "$3" >/dev/null 2>&1; rm -rf "$4"', "watchdog",
                          str(os.getpid()), os.path.join(ROOT, "scripts", "pg.sh"), self.pg_dir,
                          self.work],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        self.nats = Nats(self.work, self.group)
        self.nats.start(fresh=True)
        self.jwt_key = os.path.join(self.work, "jwt-es256.pem")
        letters = {"a": "node-a", "b": "node_b", "c": "NodeC3"}
        ports = {k: free_port() for k in letters}
        self.public_url = f"http://127.0.0.1:{ports['a']}"   # A is the "front door"
        common = ["--public-url", self.public_url, "--jwt-key", self.jwt_key,
                  "--cluster", self.nats.url, "--database-url", self.pg_url,
                  "--api-url", JP.url, "--draw-backoff-ms", "100",
                  "--ice-address", "127.0.0.1",
                  "--auto-post-max-ms", AUTO_MS, "--post-rate", POST_RATE,
                  # the front door's test runs nginx on this machine: it
                  # reaches the nodes from 127.0.0.1 (as in make cluster)
                  "--trusted-proxy", "127.0.0.1"]
        # Only A, the browser's node, offers the veth address too: with two
        # ICE addresses chat-client's setup takes 6 s (DTLS retransmits), so
        # the chat-clients connect to B and C.
        self.nodes = {}
        for k, node_id in letters.items():
            extra = ["--ice-address", VETH] if k == "a" else []
            self.nodes[k] = Node(k, node_id, ports[k], common + extra, self.work, self.group)
        # A first: it creates the shared signing key the others then read.
        self.nodes["a"].start(wait_healthy=False, fresh=True)
        for k in "bc":
            self.nodes[k].start(wait_healthy=False, fresh=True)
        for n in self.nodes.values():
            n.wait_health(200, "ok", 30)
        return self

    def stop(self):
        problems = []
        for n in getattr(self, "nodes", {}).values():
            if not os.path.exists(n.pidfile):
                continue   # never started
            st = n.status()
            if st is not None:
                if st != SIGKILL_STATUS:   # a test's SIGKILL it did not undo
                    problems.append(f"node {n.letter} exited {st} during the run")
                continue
            try:
                rc = n.stop(30)
            except Failure as e:
                problems.append(f"node {n.letter}: {e}")
                continue
            if rc != 0:
                problems.append(f"node {n.letter} exited {rc} after SIGTERM: {n.tail(5)}")
        if getattr(self, "nats", None) and os.path.exists(self.nats.pidfile):
            try:
                self.nats.stop(15)
            except Failure as e:
                problems.append(str(e))
        if getattr(self, "pg_dir", None):
            subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "stop", self.pg_dir],
                           capture_output=True, timeout=60)
        if getattr(self, "work", None):
            shutil.rmtree(self.work, ignore_errors=True)
        check(not problems, "; ".join(problems))


FX = Cluster()


def node(letter):
    return FX.nodes[letter]


# --------------------------------------------------------------------------
# helpers


def pg_rows(sql):
    """The rows of SQL as tuples of JSON values (bodies may span lines)."""
    r = subprocess.run(["psql", FX.pg_url, "-At", "-c",
                        f"select coalesce(json_agg(t), '[]') from ({sql}) t"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"psql: {r.stderr}")
    return [tuple(row.values()) for row in json.loads(r.stdout)]


def claims(token):
    """The payload of a JWT (not verified: chatd does that)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def room_online(n, room):
    """The online count of ROOM in node N's GET /api/rooms (0 if unlisted)."""
    st, got, _ = api(n, "GET", "/api/rooms")
    check(st == 200, f"GET /api/rooms on {n.letter}: {st}")
    return next((r["online"] for r in got["rooms"] if r["name"] == room), 0)


async def wait_online(room, want, timeout=10, letters="abc"):
    """Waits until every node's GET /api/rooms counts WANT users online in
    ROOM; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        got = {k: (await asyncio.to_thread(room_online, node(k), room)) for k in letters}
        if all(v == want for v in got.values()):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout * SCALE:
            raise Failure(f"GET /api/rooms online for {room}: {got}, want {want} on every node "
                          f"within {timeout} s")
        await asyncio.sleep(0.2)


async def join(peers, n, room="lobby", token=None, since=None, pin=None):
    q = f"?room={room}" + (f"&since={since}" if since is not None else "")
    p = Peer(n.url, token=token, query=q, headers={"X-Room-Pin": pin} if pin else None)
    peers.append(p)
    await p.join(timeout=20)
    p.node = n
    return p


async def distinct(peers, places, tries=40):
    """Joined peers with distinct users, one per (node, room) of PLACES (a
    draw may repeat a user: that peer is closed and drawn again)."""
    got = []
    for n, room in places:
        for _ in range(tries):
            p = await join(peers, n, room)
            if all(q.user["id"] != p.user["id"] for q in got):
                got.append(p)
                break
            await p.close()
        else:
            raise Failure(f"no new user in {tries} draws on node {n.letter}")
    return got


def brief(frames):
    """FRAMES shortened for a failure message."""
    out = []
    for m in frames:
        m = dict(m)
        for k in ("text", "title", "token"):
            if isinstance(m.get(k), str) and len(m[k]) > 30:
                m[k] = m[k][:30] + "..."
        m.pop("ts", None)
        out.append(m)
    return out


class Tape:
    """Every frame a peer receives, in order, read by a task of its own."""

    def __init__(self, peer):
        self.peer, self.frames = peer, []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self):
        while True:
            raw = await self.peer.queue.get()
            self.frames.append(json.loads(raw))
            self.changed.set()

    async def wait(self, pred, timeout=15, what="message"):
        deadline = time.monotonic() + timeout * SCALE
        seen = 0
        while True:
            for m in self.frames[seen:]:
                if pred(m):
                    return m
            seen = len(self.frames)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"{self.peer.user['name']} (node {self.peer.node.letter}): no "
                              f"{what} within {timeout} s; last {brief(self.frames[-4:])}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def text(self, text, timeout=15):
        return await self.wait(lambda m: is_msg(m, text=text), timeout, f"message {text!r}")


def public_ids(frames, lo, hi):
    """Ids of the public messages and announcements among FRAMES with
    LO <= id <= HI, in the order received."""
    out = []
    for m in frames:
        if m.get("type") in ("message", "announcement") and m.get("source") != "whisper" \
                and m.get("id") is not None and lo <= int(m["id"]) <= hi:
            out.append(int(m["id"]))
    return out


def same_sequences(seqs, what):
    """SEQS: {client name: ids}; each strictly ascending and all equal."""
    for name, s in seqs.items():
        bad = [(x, y) for x, y in zip(s, s[1:]) if x >= y]
        check(not bad, f"{what}: {name} received ids out of order or twice: {bad[:5]}")
    names = list(seqs)
    ref = seqs[names[0]]
    for name in names[1:]:
        s = seqs[name]
        if s != ref:
            raise Failure(f"{what}: {name} has {len(s)} ids, {names[0]} {len(ref)}; "
                          f"{name} lacks {sorted(set(ref) - set(s))[:10]}, has more "
                          f"{sorted(set(s) - set(ref))[:10]}")


def client_ids(c, lo, hi):
    """public_ids of what a --json chat-client printed."""
    return public_ids(c.msgs(), lo, hi)


async def client_text(c, text, timeout=15):
    try:
        return await asyncio.to_thread(c.wait_msg, lambda m: is_msg(m, text=text),
                                       timeout * SCALE, f"chat-client: message {text!r}")
    except Failure:
        raise Failure(f"chat-client: no message {text!r} within {timeout} s; it printed "
                      f"{brief(c.msgs()[-4:])}; stderr {c.err_lines[-12:]}")


def logged_once(texts, room, timeout=10):
    """Waits until each of TEXTS (public posts of ROOM, each unique) is a
    row of messages, and fails on any logged twice; {text: id}."""
    deadline = time.monotonic() + timeout * SCALE
    want = set(texts)
    while True:
        rows = pg_rows(f"select body, id from messages where room = '{room}'")
        ids = {}
        twice = set()
        for body, mid in rows:
            if body in want:
                if body in ids:
                    twice.add(body)
                ids[body] = int(mid)
        check(not twice, f"logged more than once: {sorted(twice)[:5]}")
        if want <= set(ids) or time.monotonic() > deadline:
            missing = want - set(ids)
            check(not missing, f"{len(missing)} delivered messages not in PostgreSQL after "
                  f"{timeout} s: {sorted(missing)[:5]}")
            return ids
        time.sleep(0.2)


class Page:
    """The web client in headless Chromium (tests/cluster/page.mjs), driven
    one JSON line at a time."""

    def __init__(self, url):
        os.makedirs(ARTIFACTS, exist_ok=True)
        self.log = open(os.path.join(LOG_DIR, "cluster-page.log"), "w")
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "page.mjs")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, cwd=ROOT,
                                     env=dict(os.environ, CHATD_URL=url,
                                              ARTIFACTS_DIR=ARTIFACTS))
        harness._live.append(self.proc)
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.log.write("stdout: " + line)
        self.events.put({"event": "exit"})

    def expect(self, event, timeout=30):
        try:
            e = self.events.get(timeout=timeout * SCALE)
        except queue.Empty:
            raise Failure(f"the page said nothing within {timeout} s (wanted {event})")
        check(e.get("event") == event, f"the page: {e}, wanted {event}")
        return e

    def do(self, event, timeout=30, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.expect(event, timeout)

    def quit(self):
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        return self.proc.wait(30)


# --------------------------------------------------------------------------
# configuration


@test(timeout=60)
def cluster_needs_postgresql_and_a_valid_node_id():
    """--cluster with SQLite (the default or named), and --node-id outside
    [A-Za-z0-9_-]{1,32}: exit 2 with a line naming the problem; a 32-character
    id is taken (that node joins, then stops with 0)."""
    with tempfile.TemporaryDirectory() as data:
        base = [CHATD_BIN, "--listen", "127.0.0.1:0", "--rtc-port", "0", "--data-dir", data,
                "--api-url", JP.url, "--jwt-key", FX.jwt_key, "--public-url", FX.public_url,
                "--cluster", FX.nats.url]
        cases = [
            (["--node-id", "x1"], "cluster", "--cluster with the SQLite default"),
            (["--node-id", "x1", "--database-url", f"sqlite://{data}/c.db"], "cluster",
             "--cluster with sqlite://"),
            (["--node-id", "bad id", "--database-url", FX.pg_url], "node-id", "a space"),
            (["--node-id", "n" * 33, "--database-url", FX.pg_url], "node-id", "33 characters"),
            (["--node-id", "", "--database-url", FX.pg_url], "node-id", "empty"),
            (["--node-id", "caf\u00e9", "--database-url", FX.pg_url], "node-id", "non-ASCII"),
            (["--node-id", "a.b", "--database-url", FX.pg_url], "node-id", "a dot"),
        ]
        for extra, word, what in cases:
            r = subprocess.run(base + extra, capture_output=True, text=True, timeout=20)
            check(r.returncode == 2, f"{what}: exit {r.returncode}, want 2; {r.stderr[-300:]!r}")
            check(word in r.stderr.lower(), f"{what}: stderr does not name {word!r}: "
                  f"{r.stderr[-300:]!r}")
        longest = "Az09_-" + "x" * 26
        p = subprocess.Popen(base + ["--node-id", longest, "--database-url", FX.pg_url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        harness._live.append(p)
        line = p.stdout.readline()
        check("listening on" in line, f"--node-id {longest}: {line!r} {p.stderr.read()[-300:] if p.poll() is not None else ''}")
        p.send_signal(signal.SIGTERM)
        check(p.wait(30) == 0, "a 32-character node id: exit status after SIGTERM")


# --------------------------------------------------------------------------
# presence, order, identity


@test(timeout=90)
def presence_spans_the_nodes():
    """a on A and b on B in one room: a sees b join, b's welcome lists a,
    GET /api/rooms on every node (C has nobody there) lists the room with 2;
    c joins on C: a and b see it, c's welcome lists both, every node counts
    3; b leaves: a and c get its leave and every node counts 2."""
    room = "pres"

    def joined(u):
        return lambda m: m.get("type") == "presence" and m.get("event") == "join" \
            and m["user"]["id"] == u["id"]

    def left(u):
        return lambda m: m.get("type") == "presence" and m.get("event") == "leave" \
            and m["user"]["id"] == u["id"]

    async def body(peers):
        a, b = await distinct(peers, [(node("a"), room), (node("b"), room)])
        ta, tb = Tape(a), Tape(b)
        await ta.wait(joined(b.user), 10, f"presence join of {b.user['name']} (node B) at A")
        check(a.user["id"] in {u["id"] for u in b.welcome["online"]},
              f"b's welcome (node B) does not list a (node A): {b.welcome['online']}")
        await wait_online(room, 2, 10)
        for _ in range(40):   # c: a user neither a nor b is
            c = await join(peers, node("c"), room)
            if c.user["id"] not in (a.user["id"], b.user["id"]):
                break
            await c.close()
        tc = Tape(c)
        await ta.wait(joined(c.user), 10, f"presence join of {c.user['name']} (node C) at A")
        await tb.wait(joined(c.user), 10, f"presence join of {c.user['name']} (node C) at B")
        online_c = {u["id"] for u in c.welcome["online"]}
        check({a.user["id"], b.user["id"]} <= online_c,
              f"c's welcome (node C) does not list a and b: {c.welcome['online']}")
        check(c.welcome.get("online_count", len(online_c)) == 3,
              f"c's welcome: online_count {c.welcome.get('online_count')}, want 3")
        await wait_online(room, 3, 10)
        await b.close()
        t0 = time.monotonic()
        await ta.wait(left(b.user), 10, f"presence leave of {b.user['name']} at A")
        await tc.wait(left(b.user), 10, f"presence leave of {b.user['name']} at C")
        took = time.monotonic() - t0
        await wait_online(room, 2, 10)
        print(f"    leave seen on the other nodes {took:.2f} s after the close", flush=True)

    arun(body)


@test(timeout=150)
def every_node_delivers_the_same_messages_in_the_same_order():
    """A room with peers on A, B and C, a chat-client --json on C and a
    text chat-client on B: everyone posts at once (and auto posts run), a
    whisper from A to C, an announcement sent to B: between a start and an
    end marker every client receives exactly the same public ids in the
    same, ascending order; the whisper reaches its two users only, with one
    id; every message is one row of PostgreSQL with the id delivered."""
    room = "order"
    per_peer = 8
    res = {}

    async def body(peers):
        owner = await join(peers, node("a"), "lobby")
        st, got, _ = await aapi(node("a"), "POST", "/api/rooms",
                                {"name": room, "secret": "s-order"}, token=owner.welcome["token"])
        check(st == 201, f"create {room} on A: {st} {got}")
        a1, a2, b1, b2, c1 = await distinct(peers, [(node("a"), room), (node("a"), room),
                                                    (node("b"), room), (node("b"), room),
                                                    (node("c"), room)])
        cj = await asyncio.to_thread(JsonClient, node("c").url + f"?room={room}")
        await asyncio.to_thread(cj.welcome, 20)
        ct = await asyncio.to_thread(Client, node("b").url + f"?room={room}")
        await asyncio.to_thread(ct.wait_connected, 20)
        everyone = [a1, a2, b1, b2, c1]
        tapes = {f"{p.user['name']} on {p.node.letter.upper()}": Tape(p) for p in everyone}
        a1.post("order-start")
        for t in tapes.values():
            await t.text("order-start", 20)
        await client_text(cj, "order-start", 20)
        start = int(next(m for m in tapes_first(tapes).frames if is_msg(m, text="order-start"))["id"])

        texts = []

        async def burst(p):
            for i in range(per_peer):
                t = f"order-{p.node.letter}-{p.user['id']}-{i}"
                texts.append(t)
                p.post(t)
                await asyncio.sleep(random.uniform(0, 0.08))

        async def announce():
            await asyncio.sleep(0.15)
            return await aapi(node("b"), "POST", f"/api/rooms/{room}/announce",
                              {"secret": "s-order", "text": "order-announcement"})

        cj_texts = [f"order-cclient-{i}" for i in range(3)]
        cj.send_many(cj_texts)
        texts += cj_texts
        a1.send({"type": "whisper", "token": a1.welcome["token"], "to": [c1.user["id"]],
                 "text": "order-whisper", "ref": "ow"})
        results = await asyncio.gather(*(burst(p) for p in everyone), announce())
        st, ann, _ = results[-1]
        check(st == 202, f"announce via B: {st} {ann}")
        # every post is back at its sender before the end marker goes out
        tape_of = {id(t.peer): t for t in tapes.values()}
        for p in everyone:
            await tape_of[id(p)].text(f"order-{p.node.letter}-{p.user['id']}-{per_peer - 1}", 20)
        for t in cj_texts:
            await client_text(cj, t, 20)
        b2.post("order-end")
        for t in tapes.values():
            await t.text("order-end", 20)
        await client_text(cj, "order-end", 20)
        end = int(next(m for m in tapes_first(tapes).frames if is_msg(m, text="order-end"))["id"])

        seqs = {name: public_ids(t.frames, start, end) for name, t in tapes.items()}
        seqs["chat-client --json on C"] = client_ids(cj, start, end)
        same_sequences(seqs, "order")
        ref = seqs["chat-client --json on C"]
        by_text = {}
        for m in tapes_first(tapes).frames:
            if m.get("type") == "message" and start <= int(m["id"]) <= end:
                by_text.setdefault(m["text"], []).append(int(m["id"]))
        for t in texts:
            check(len(by_text.get(t, [])) == 1, f"{t!r} delivered {by_text.get(t)}")
        ann_id = int(ann["announcement"]["id"])
        check(ann_id in ref, f"the announcement {ann_id} is not in the sequence")
        # the whisper: a1 and c1, one id, nobody else
        w = {}
        for name, t in tapes.items():
            got = [m for m in t.frames if m.get("source") == "whisper"]
            w[name] = [int(m["id"]) for m in got]
        wa = w[f"{a1.user['name']} on A"]
        wc = w[f"{c1.user['name']} on C"]
        check(len(wa) == 1 and wa == wc, f"whisper ids at the sender {wa}, at the recipient {wc}")
        others = {k: v for k, v in w.items() if not k.startswith((a1.user["name"] + " on A",
                                                                  c1.user["name"] + " on C"))}
        check(not any(others.values()), f"the whisper reached {others}")
        cj_user = cj.welcome()["user"]["id"]
        if cj_user not in (a1.user["id"], c1.user["id"]):   # else one of its two users
            check(not any(m.get("source") == "whisper" for m in cj.msgs()),
                  "the whisper reached the chat-client")
        check(start < wa[0] < end, f"whisper id {wa[0]} outside {start}..{end}")
        # the text client on B printed a post from A as NAME: text
        line = f"{a1.user['name']}: order-a-{a1.user['id']}-0"
        await asyncio.to_thread(wait_until, lambda: line in ct.lines, 10 * SCALE,
                                f"the text chat-client's line {line!r}")
        res.update(texts=texts, ids=by_text, start=start, end=end, ref=ref, whisper=wa[0],
                   ann=ann_id, n=len(ref))
        check(await asyncio.to_thread(cj.finish) == 0, "chat-client --json exit status")
        check(await asyncio.to_thread(ct.finish) == 0, "text chat-client exit status")

    arun(body)
    logged = logged_once(res["texts"] + ["order-start", "order-end"], room)
    for t in res["texts"]:
        check(logged[t] == res["ids"][t][0], f"{t!r} delivered as {res['ids'][t][0]}, "
              f"logged as {logged[t]}")
    rows = pg_rows(f"select id from messages where id between {res['start']} and {res['end']}")
    have = {int(r[0]) for r in rows}
    missing = (set(res["ref"]) | {res["whisper"]}) - have
    check(not missing, f"delivered ids not in PostgreSQL: {sorted(missing)[:10]}")
    src = pg_rows(f"select source, recipients from messages where id = {res['whisper']}")
    check(src and src[0][0] == "whisper", f"the whisper's row: {src}")
    src = pg_rows(f"select source from messages where id = {res['ann']}")
    check(src == [("announcement",)], f"the announcement's row: {src}")
    print(f"    {res['n']} ids in the same order on 6 clients over 3 nodes", flush=True)


def tapes_first(tapes):
    return next(iter(tapes.values()))


@test(timeout=60)
def a_token_from_one_node_resumes_on_another():
    """A's token as the bearer on B: the same user (sub, auth_time), no new
    draw on B; B's fresh token resumes on C; every node's JWKS has the key."""
    async def body(peers):
        a = await join(peers, node("a"), "lobby")
        ca = claims(a.welcome["token"])
        draws = node("b").metric("chatd_draws_total")
        b = await join(peers, node("b"), "lobby", token=a.welcome["token"])
        check(b.user == a.user, f"resumed on B as {b.user}, was {a.user}")
        cb = claims(b.welcome["token"])
        check(cb["sub"] == ca["sub"] == str(a.user["id"]), f"sub {cb['sub']} / {ca['sub']}")
        check(cb.get("auth_time") == ca.get("auth_time"),
              f"auth_time {cb.get('auth_time')} after the resume, {ca.get('auth_time')} before")
        check(cb["iss"] == ca["iss"] == FX.public_url, f"iss {cb['iss']} / {ca['iss']}")
        check(node("b").metric("chatd_draws_total") == draws, "B drew a user for a resume")
        c = await join(peers, node("c"), "lobby", token=b.welcome["token"])
        check(c.user == a.user, f"resumed on C as {c.user}")
        kid = json.loads(base64.urlsafe_b64decode(
            a.welcome["token"].split(".")[0] + "==="))["kid"]
        for k in "abc":
            st, jwks, _ = await aapi(node(k), "GET", "/.well-known/jwks.json")
            check(st == 200 and kid in [x.get("kid") for x in jwks["keys"]],
                  f"node {k}'s JWKS lacks {kid}: {jwks}")
        # a forged token is refused on every node alike
        bad = a.welcome["token"][:-4] + ("AAAA" if not a.welcome["token"].endswith("AAAA")
                                         else "BBBB")
        p = Peer(node("c").url, token=bad)
        peers.append(p)
        st, _, raw = await p.offer()
        check(st == 401, f"a forged token on C: {st} {raw[:200]!r}")

    arun(body)


@test(timeout=60)
def delete_rtc_on_any_node_reaches_the_holder():
    """DELETE /api/rtc/ID of a session on A, sent to B: 204 and the channel
    closes; the same id again, to C: 404; an id nobody holds: 404 within
    about 1 s."""
    async def body(peers):
        p = await join(peers, node("a"), "del")
        loc = p.location
        t0 = time.monotonic()
        st, _, _ = await aapi(node("b"), "DELETE", loc)
        took = time.monotonic() - t0
        check(st == 204, f"DELETE {loc} on B: {st}")
        try:
            await asyncio.wait_for(p.closed.wait(), 10 * SCALE)
        except asyncio.TimeoutError:
            raise Failure("the session on A did not close after DELETE on B")
        for letter, path in (("c", loc), ("a", loc), ("b", "/api/rtc/" + "z" * 32)):
            t1 = time.monotonic()
            st, _, _ = await aapi(node(letter), "DELETE", path)
            unknown = time.monotonic() - t1
            check(st == 404, f"DELETE {path} on {letter.upper()} (nobody holds it): {st}")
            check(unknown < 2.5 * SCALE, f"404 for an unknown id took {unknown:.2f} s on "
                  f"{letter.upper()}")
        print(f"    DELETE via another node {took * 1000:.0f} ms", flush=True)

    arun(body)


# --------------------------------------------------------------------------
# rooms API


@test(timeout=120)
def rooms_api_applies_on_every_node():
    """A room created on A is listed and joinable on B; a PATCH on C is seen
    on A (a pin then asked for on A); an announcement sent to C reaches
    members on A and B with one id; a kick sent to B closes the user's
    session on A; DELETE sent to B closes the sessions on A and B."""
    room = "hall"

    async def body(peers):
        owner = await join(peers, node("a"), "lobby")
        st, got, _ = await aapi(node("a"), "POST", "/api/rooms",
                                {"name": room, "description": "made on A", "secret": "hs"},
                                token=owner.welcome["token"])
        check(st == 201, f"create on A: {st} {got}")
        st, got, _ = await aapi(node("b"), "POST", "/api/rooms", {"name": room},
                                token=owner.welcome["token"])
        check(st == 409, f"the same name created on B: {st} {got}")

        async def listed(letter, pred, what):
            deadline = time.monotonic() + 5 * SCALE
            while True:
                st, got, _ = await aapi(node(letter), "GET", "/api/rooms")
                r = next((x for x in got["rooms"] if x["name"] == room), None)
                if pred(r):
                    return r
                if time.monotonic() > deadline:
                    raise Failure(f"{what} on {letter.upper()}: {r}")
                await asyncio.sleep(0.1)
        await listed("b", lambda r: r and r["description"] == "made on A", "listed")
        ua, ub = await distinct(peers, [(node("a"), room), (node("b"), room)])
        ta, tb = Tape(ua), Tape(ub)
        await wait_online(room, 2, 10)
        st, got, _ = await aapi(node("c"), "PATCH", f"/api/rooms/{room}",
                                {"secret": "hs", "description": "patched on C"})
        check(st == 200, f"PATCH on C: {st} {got}")
        await listed("a", lambda r: r and r["description"] == "patched on C", "the PATCH")
        st, got, _ = await aapi(node("c"), "PATCH", f"/api/rooms/{room}",
                                {"secret": "hs", "pin": "4321"})
        check(st == 200 and got["room"]["pin"] is True, f"pin on C: {st} {got}")
        q = Peer(node("a").url, query=f"?room={room}")
        peers.append(q)
        deadline = time.monotonic() + 5 * SCALE
        while True:   # the pin set on C is asked for on A
            st, _, _ = await q.offer()
            if st == 403 or time.monotonic() > deadline:
                break
            await q.close()
            q = Peer(node("a").url, query=f"?room={room}")
            peers.append(q)
            await asyncio.sleep(0.2)
        check(st == 403, f"no pin on A after the pin was set on C: {st}")
        st, got, _ = await aapi(node("c"), "PATCH", f"/api/rooms/{room}",
                                {"secret": "hs", "pin": None})
        check(st == 200, f"pin removed on C: {st} {got}")
        st, got, _ = await aapi(node("c"), "POST", f"/api/rooms/{room}/announce",
                                {"secret": "hs", "text": "hall news"})
        check(st == 202, f"announce on C: {st} {got}")
        ma = await ta.wait(lambda m: m.get("type") == "announcement", 10, "announcement at A")
        mb = await tb.wait(lambda m: m.get("type") == "announcement", 10, "announcement at B")
        check(ma == mb == got["announcement"], f"A got {ma}, B got {mb}, C answered {got}")
        st, got, _ = await aapi(node("b"), "POST", f"/api/rooms/{room}/kick",
                                {"secret": "hs", "user_id": ua.user["id"]})
        check(st == 204, f"kick on B of a user on A: {st} {got}")
        k = await ta.wait(lambda m: m.get("type") == "kicked", 10, "kicked at A")
        check(k["room"] == room, f"{k}")
        try:
            await asyncio.wait_for(ua.closed.wait(), 10 * SCALE)
        except asyncio.TimeoutError:
            raise Failure("the kicked session on A did not close")
        await tb.wait(lambda m: m.get("type") == "presence" and m["event"] == "leave"
                      and m["user"]["id"] == ua.user["id"], 10, "the kicked user's leave at B")
        ua2 = await join(peers, node("a"), room, token=ua.welcome["token"])
        ta2 = Tape(ua2)
        st, got, _ = await aapi(node("b"), "DELETE", f"/api/rooms/{room}", {"secret": "hs"})
        check(st == 204, f"DELETE room on B: {st} {got}")
        for t, p, where in ((ta2, ua2, "A"), (tb, ub, "B")):
            c = await t.wait(lambda m: m.get("type") == "room_closed", 10, f"room_closed at {where}")
            check(c["room"] == room, f"{c}")
            try:
                await asyncio.wait_for(p.closed.wait(), 10 * SCALE)
            except asyncio.TimeoutError:
                raise Failure(f"the session on {where} did not close after DELETE on B")
        for letter in "abc":
            await listed(letter, lambda r: r is None, "still listed after DELETE")

    arun(body)


# --------------------------------------------------------------------------
# the web client and load


@test(timeout=120)
def a_browser_on_one_node_talks_with_a_peer_on_another():
    """The web page in Chromium on A and an aiortc peer on B, one room: the
    page shows the peer's post with the id the peer got, and the peer gets
    the page's post with the id the page shows."""
    room = "web"

    async def body(peers):
        page = await asyncio.to_thread(Page, node("a").url + f"?room={room}")
        try:
            ready = await asyncio.to_thread(page.expect, "ready", 60)
            b = await join(peers, node("b"), room)
            tb = Tape(b)
            text = f"from B to the browser {random.randrange(10**6)}"
            b.post(text)
            mine = await tb.text(text, 15)
            got = await asyncio.to_thread(page.do, "got", 30, op="wait", text=text)
            check(got["id"] == mine["id"], f"the page shows id {got['id']}, B got {mine['id']}")
            check(got["name"] == b.user["name"], f"the page names {got['name']!r}")
            reply = f"from the browser on A {random.randrange(10**6)}"
            posted = await asyncio.to_thread(page.do, "posted", 30, op="post", text=reply)
            m = await tb.text(reply, 15)
            check(m["id"] == posted["id"], f"B got id {m['id']}, the page shows {posted['id']}")
            check(str(m["user"]["id"]) == str(ready["sub"]), f"posted as {m['user']}, the page "
                  f"is user {ready['sub']}")
            await asyncio.to_thread(page.do, "shot", 30, op="shot", name="cluster-web.png")
            errs = await asyncio.to_thread(page.do, "errors", 10, op="errors")
            check(not errs["errors"], f"page errors: {errs['errors']}")
        finally:
            rc = await asyncio.to_thread(page.quit)
        check(rc == 0, f"the page driver exited {rc}")

    arun(body)


@test(timeout=180)
def a_room_on_two_nodes_under_load_loses_nothing():
    """LOAD_PEERS peers on A and as many on B in one room each post
    LOAD_POSTS messages as fast as the rate allows (auto posts run too):
    every peer receives every message once, all in the same order."""
    room = "load"
    res = {}

    async def body(peers):
        ps = []
        for letter in "ab":
            for _ in range(LOAD_PEERS):
                ps.append(await join(peers, node(letter), room))
        tapes = {f"peer {i} on {p.node.letter.upper()}": Tape(p) for i, p in enumerate(ps)}
        ps[0].post("load-start")
        for t in tapes.values():
            await t.text("load-start", 20)
        texts = [f"load-{i}-{k}" for i in range(len(ps)) for k in range(LOAD_POSTS)]
        t0 = time.monotonic()

        async def burst(i, p):
            for k in range(LOAD_POSTS):
                p.post(f"load-{i}-{k}")
                await asyncio.sleep(0.05)   # 20/s a peer
        await asyncio.gather(*(burst(i, p) for i, p in enumerate(ps)))
        tl = list(tapes.values())
        for i, p in enumerate(ps):
            await tl[i].text(f"load-{i}-{LOAD_POSTS - 1}", 60)
        ps[-1].post("load-end")
        for t in tl:
            await t.text("load-end", 60)
        took = time.monotonic() - t0
        start = int(next(m for m in tl[0].frames if is_msg(m, text="load-start"))["id"])
        end = int(next(m for m in tl[0].frames if is_msg(m, text="load-end"))["id"])
        refused = [m for t in tl for m in t.frames if m.get("type") == "error"]
        check(not refused, f"posts refused: {refused[:3]}")
        seqs = {name: public_ids(t.frames, start, end) for name, t in tapes.items()}
        same_sequences(seqs, "load")
        for name, t in tapes.items():
            got = [m["text"] for m in t.frames if m.get("type") == "message"
                   and start <= int(m["id"]) <= end and m["text"].startswith("load-")]
            missing = set(texts) - set(got)
            check(not missing, f"{name} lacks {len(missing)} posts: {sorted(missing)[:5]}")
            check(len(got) == len(set(got)), f"{name} got a post twice")
        res.update(texts=texts, n=len(seqs[next(iter(seqs))]), took=took)

    arun(body)
    logged_once(res["texts"], room, timeout=20)
    n = len(res["texts"])
    print(f"    {n} posts from {2 * LOAD_PEERS} peers ({res['n']} ids with auto posts) to "
          f"{2 * LOAD_PEERS} peers in {res['took']:.1f} s, one order", flush=True)


# --------------------------------------------------------------------------
# failures


@test(timeout=120)
def the_database_down_loses_nothing_delivered():
    """PostgreSQL stopped: posts on A and B are still delivered everywhere
    in one order (the stream orders them, not the database), each node
    keeps its rows queued, and once PostgreSQL is back every delivered
    message is a row, once."""
    room = "dbdown"
    port = FX.pg_url.rsplit(":", 1)[1].split("/")[0]
    pg = os.path.join(ROOT, "scripts", "pg.sh")
    texts = [f"dbdown-{letter}-{k}" for letter in "ab" for k in range(3)]

    async def body(peers):
        a, b = await distinct(peers, [(node("a"), room), (node("b"), room)])
        ta, tb = Tape(a), Tape(b)
        r = subprocess.run([pg, "stop", FX.pg_dir], capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"PostgreSQL did not stop: {r.stderr[-300:]}")
        try:
            for k in range(3):
                a.post(f"dbdown-a-{k}")
                b.post(f"dbdown-b-{k}")
                await asyncio.sleep(0.2)
            for t in (ta, tb):
                for text in texts:
                    await t.text(text, 20)
            ids = {}
            for name, t in (("A", ta), ("B", tb)):
                ids[name] = [int(m["id"]) for m in t.frames if m.get("type") == "message"
                             and m.get("text", "").startswith("dbdown-")]
            same_sequences(ids, "while PostgreSQL is down")
            errors = [m for t in (ta, tb) for m in t.frames if m.get("type") == "error"]
            check(not errors, f"posts refused while PostgreSQL is down: {errors[:3]}")
        finally:
            r = subprocess.run([pg, "start", FX.pg_dir, port], capture_output=True, text=True,
                               timeout=90)
            check(r.returncode == 0, f"PostgreSQL did not start again: {r.stderr[-300:]}")

    arun(body)
    logged = logged_once(texts, room, timeout=30)
    print(f"    {len(texts)} posts delivered in one order with PostgreSQL down; all "
          f"{len(logged)} rows written once after it came back", flush=True)


@test(timeout=150)
def a_node_killed_drops_out_and_its_client_catches_up_elsewhere():
    """x on C, a on A, b on B in one (created) room, messages flowing. C is
    killed (SIGKILL): within 10 s a and b get x's leave, A and B count 2 in
    GET /api/rooms and a new joiner's welcome does not list x; everything x
    received is at a too; x reconnects to B with its token and since=: the
    same user, and it ends with exactly a's ids. Every delivered id is in
    PostgreSQL. C is started again, rejoins the cluster and its posts are
    delivered."""
    room = "crash"
    out = {}

    async def body(peers):
        owner = await join(peers, node("a"), "lobby")
        st, got, _ = await aapi(node("a"), "POST", "/api/rooms", {"name": room},
                                token=owner.welcome["token"])
        check(st == 201, f"create {room}: {st} {got}")
        a, b, x = await distinct(peers, [(node("a"), room), (node("b"), room),
                                         (node("c"), room)])
        ta, tb, tx = Tape(a), Tape(b), Tape(x)
        a.post("crash-start")
        for t in (ta, tb, tx):
            await t.text("crash-start", 15)
        start = int((await ta.text("crash-start"))["id"])
        for i in range(3):
            x.post(f"crash-x-{i}")
        await tx.text("crash-x-2", 15)
        await asyncio.sleep(1)
        seen_x = public_ids(tx.frames, start, 1 << 62)
        last = seen_x[-1]
        node("c").kill(signal.SIGKILL)
        t0 = time.monotonic()
        check(node("c").wait_exit(10) == SIGKILL_STATUS, "node C's status after SIGKILL")
        left = (lambda m: m.get("type") == "presence" and m.get("event") == "leave"
                and m["user"]["id"] == x.user["id"])
        await ta.wait(left, 10, f"the leave of {x.user['name']} (on the killed node) at A")
        out["leave"] = time.monotonic() - t0
        await tb.wait(left, 10, "the leave at B")
        await wait_online(room, 2, 10 - (time.monotonic() - t0), letters="ab")
        out["online"] = time.monotonic() - t0
        for _ in range(40):
            late = await join(peers, node("b"), room)
            if late.user["id"] != x.user["id"]:
                break
            await late.close()
        check(x.user["id"] not in {u["id"] for u in late.welcome["online"]},
              f"a welcome on B after C died lists x: {late.welcome['online']}")
        # all x had from C is in the stream: a has it too
        await ta.wait(lambda m: m.get("id") is not None and int(m["id"]) >= last, 10,
                      f"id {last} (x's last) at a")
        lacking = set(seen_x) - set(public_ids(ta.frames, start, last))
        check(not lacking, f"x got {sorted(lacking)} from C before it died, a never did")
        # x comes back on B
        x2 = Peer(node("b").url, token=x.welcome["token"], query=f"?room={room}&since={last}")
        peers.append(x2)
        await x2.connect(20)
        x2.node = node("b")
        t2 = Tape(x2)
        w = await t2.wait(lambda m: m.get("type") == "welcome", 15, "welcome on B")
        check(w["user"] == x.user, f"came back on B as {w['user']}, was {x.user}")
        h = await t2.wait(lambda m: m.get("type") == "history", 15, "the catch-up")
        caught = [int(m["id"]) for m in h["messages"] if m.get("source") != "whisper"]
        check(all(i > last for i in caught), f"catch-up after {last} holds {caught}")
        check(not h.get("more"), "more: true after a short outage")
        await asyncio.sleep(1.5)
        b.post("crash-end")
        for t in (ta, t2):
            await t.text("crash-end", 15)
        end = int((await ta.text("crash-end"))["id"])
        want = public_ids(ta.frames, start, end)
        have = seen_x + caught + public_ids(t2.frames[t2.frames.index(h) + 1:], start, end)
        twice = sorted({i for i in have if have.count(i) > 1})
        check(not twice, f"x got ids twice across the reconnect: {twice}")
        check(sorted(have) == want, f"x has {len(have)} ids, a {len(want)}: x lacks "
              f"{sorted(set(want) - set(have))[:10]}, has more {sorted(set(have) - set(want))[:10]}")
        out.update(n=len(want), caught=len(caught), ids=want)

    try:
        arun(body)
    finally:
        if node("c").status() is not None:
            node("c").start(wait_healthy=False)
    took = node("c").wait_health(200, "ok", 30)

    async def again(peers):
        a, c = await distinct(peers, [(node("a"), room), (node("c"), room)])
        check(a.user["id"] in {u["id"] for u in c.welcome["online"]},
              f"the restarted C's welcome does not list a (on A): {c.welcome['online']}")
        ta, tc = Tape(a), Tape(c)
        c.post("crash-after-restart", ref="r1")
        mine = await tc.wait(lambda m: m.get("ref") == "r1", 10, "the answer to a post on C")
        check(is_msg(mine), f"a post on the restarted C: {mine}")
        got = await ta.text("crash-after-restart", 10)
        check(got["id"] == mine["id"], f"ids {got['id']} at A, {mine['id']} at C")
    arun(again)
    logged_once(["crash-start", "crash-x-0", "crash-x-1", "crash-x-2", "crash-end",
                 "crash-after-restart"], room)
    rows = pg_rows(f"select id from messages where id between {out['ids'][0]} and "
                   f"{out['ids'][-1]}")
    missing = set(out["ids"]) - {int(r[0]) for r in rows}
    check(not missing, f"delivered ids not in PostgreSQL after the SIGKILL: {sorted(missing)}")
    print(f"    leave at A {out['leave']:.1f} s and online counts {out['online']:.1f} s after "
          f"SIGKILL; {out['n']} ids, {out['caught']} caught up on B; C back in {took:.1f} s",
          flush=True)


@test(timeout=150)
def nats_restarted_posts_refused_meanwhile_then_one_sequence():
    """NATS is killed and started again (same storage, same port): every
    node's health says cluster down, then ok; posts meanwhile get
    UNAVAILABLE and are never delivered, anywhere; afterwards posting works
    on every node and the peers on A and B and the chat-client on C saw one
    sequence."""
    room = "natsr"
    out = {}

    async def body(peers):
        a, b = await distinct(peers, [(node("a"), room), (node("b"), room)])
        ta, tb = Tape(a), Tape(b)
        cj = await asyncio.to_thread(JsonClient, node("c").url + f"?room={room}")
        await asyncio.to_thread(cj.welcome, 20)
        a.post("natsr-start")
        for t in (ta, tb):
            await t.text("natsr-start", 15)
        await client_text(cj, "natsr-start")
        start = int((await ta.text("natsr-start"))["id"])
        cj.send("natsr-before-cclient")
        await client_text(cj, "natsr-before-cclient")
        FX.nats.kill(signal.SIGKILL)
        FX.nats.wait_exit(10)
        t0 = time.monotonic()
        for k in "abc":
            await asyncio.to_thread(node(k).wait_health, 503, "down", 10)
        out["down"] = time.monotonic() - t0
        refused = []
        for i, p in enumerate((a, b, a)):
            text = f"natsr-down-{i}"
            p.post(text, ref=f"d{i}")
            tp = ta if p is a else tb
            e = await tp.wait(lambda m: m.get("ref") == f"d{i}", 15, f"the answer to {text}")
            check(e.get("type") == "error" and e.get("code") == "UNAVAILABLE",
                  f"a post while NATS is down: {e}")
            refused.append(text)
        cj.send("natsr-down-cclient")
        await asyncio.to_thread(cj.wait_msg, lambda m: m.get("type") == "error"
                                and m.get("code") == "UNAVAILABLE", 15 * SCALE,
                                "UNAVAILABLE at the chat-client")
        refused.append("natsr-down-cclient")
        FX.nats.start()
        t1 = time.monotonic()
        for k in "abc":
            await asyncio.to_thread(node(k).wait_health, 200, "ok", 30)
        out["up"] = time.monotonic() - t1
        retries = 0
        while True:   # the first post after health says ok
            a.post("natsr-up-a", ref=f"u{retries}")
            m = await ta.wait(lambda m: m.get("ref") == f"u{retries}", 15, "the answer to up-a")
            if m.get("type") == "message":
                break
            check(m.get("code") == "UNAVAILABLE" and retries < 10,
                  f"a post after NATS came back: {m}")
            retries += 1
            await asyncio.sleep(0.5)
        out["retries"] = retries
        b.post("natsr-up-b")
        cj.send("natsr-up-cclient")
        await client_text(cj, "natsr-up-cclient")
        for t in (ta, tb):
            await t.text("natsr-up-b", 15)
            await t.text("natsr-up-cclient", 15)
        await client_text(cj, "natsr-up-b")
        await asyncio.sleep(1)
        b.post("natsr-end")
        for t in (ta, tb):
            await t.text("natsr-end", 15)
        await client_text(cj, "natsr-end")
        end = int((await ta.text("natsr-end"))["id"])
        seqs = {"a on A": public_ids(ta.frames, start, end),
                "b on B": public_ids(tb.frames, start, end),
                "chat-client on C": client_ids(cj, start, end)}
        same_sequences(seqs, "after the NATS restart")
        for frames in (ta.frames, tb.frames, cj.msgs()):
            late = [m for m in frames if m.get("type") == "message" and m.get("text") in refused]
            check(not late, f"a post refused with UNAVAILABLE was delivered: {late}")
        out.update(refused=refused, n=len(seqs["a on A"]))
        check(await asyncio.to_thread(cj.finish) == 0, "chat-client exit status")

    try:
        arun(body)
    finally:
        if FX.nats.status() is not None:
            FX.nats.start()
    rows = pg_rows("select body from messages where body like 'natsr-down-%'")
    check(not rows, f"refused posts logged: {rows}")
    logged_once(["natsr-up-a", "natsr-up-b", "natsr-up-cclient"], room)
    print(f"    health down {out['down']:.1f} s after the kill, ok {out['up']:.1f} s after the "
          f"restart; {len(out['refused'])} posts refused; {out['retries']} retries after; "
          f"{out['n']} ids in one order", flush=True)


# --------------------------------------------------------------------------
# the front door


def log_text(n):
    try:
        with open(n.logfile, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def bad_offer_from(source, n, real_ip):
    """POST /api/rtc straight to node N (not through nginx) from the local
    address SOURCE, with X-Real-IP: REAL_IP and an offer with no data
    channel (answered 400, logged "rejected an offer from CLIENT: no
    application m-line"); (status, the port it came from). http.client, as
    urllib cannot choose the source address."""
    conn = HTTPConnection("127.0.0.1", n.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", "/api/rtc?room=door", b"v=0\r\n",
                     {"Content-Type": "application/sdp", "X-Real-IP": real_ip})
        port = conn.sock.getsockname()[1]
        r = conn.getresponse()
        r.read()
        return r.status, port
    finally:
        conn.close()


ACCESS_RTC = re.compile(r'"POST /api/rtc\?room=door HTTP/1\.1" (\d+) \d+ node=(.*) '
                        r'node_status=(.*) time=')


@test(timeout=90)
def the_nginx_front_door_terminates_tls_and_spreads_offers():
    """deploy/nginx/chatd-cluster.conf in front of A, B and C, filled in by
    scripts/nginx-conf.sh as make cluster fills it (a self-signed
    certificate from openssl, in the suite's temporary folder), nginx run
    with -p/-c/-e there, listening on the veth address VETH:PORT:

    1. HTTPS: a context trusting only that certificate gets /api/health
       200 "cluster":"ok" through nginx; the system's CAs refuse it (the
       verification is on);
    2. six aiortc peers POST their offers to https://VETH:PORT/api/rtc:
       the sessions are on at least two nodes (each node's log names the
       ids it created), and two peers on different nodes chat both ways
       with one id per message;
    3. the trust model of --trusted-proxy, as far as one machine can show
       it: the nodes trust 127.0.0.1, the address nginx reaches them from;
       the test's client reaches nginx at VETH, so from VETH. Through
       nginx, every session's log line says "created for VETH (via
       127.0.0.1:PORT)", also for an offer with a forged X-Real-IP (nginx
       replaces it). Straight to node B from VETH (not trusted), with an
       offer B refuses (400, no data channel), a forged X-Real-IP is not
       believed: "rejected an offer from VETH:PORT", and the forged
       address is nowhere in B's log. Straight from 127.0.0.1 the header
       IS believed, as documented: anything on the proxy's own address is
       as trusted as the proxy (the check that the refusal above is not
       vacuous);
    4. node C killed (SIGKILL, the connection refused): four offers
       through nginx all succeed; nginx's access log shows one tried on C
       first and passed on (node_status "502, 201"). C is started again
       (the suite's own Node.start) before the test ends, also on failure,
       and nginx is stopped."""
    ngx = os.path.join(FX.work, "nginx")
    port = free_port()
    base = f"https://{VETH}:{port}"
    c = node("c")
    r = subprocess.run([os.path.join(ROOT, "scripts", "nginx-conf.sh"), "--san", VETH, ngx,
                        f"{VETH}:{port}", *(f"127.0.0.1:{node(k).port}" for k in "abc")],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"scripts/nginx-conf.sh: {r.stderr.strip()[-400:]}")
    access = os.path.join(ngx, "access.log")
    with open(os.path.join(LOG_DIR, "cluster-nginx.out"), "w") as nout:
        proc = subprocess.Popen(["nginx", "-p", ngx + "/", "-c", os.path.join(ngx, "nginx.conf"),
                                 "-e", os.path.join(ngx, "error.log"), "-g", "daemon off;"],
                                stdin=subprocess.DEVNULL, stdout=nout, stderr=subprocess.STDOUT)
    harness._live.append(proc)
    out = {}
    try:
        ctx = ssl.create_default_context(cafile=os.path.join(ngx, "tls", "cert.pem"))

        def health():
            check(proc.poll() is None, f"nginx exited {proc.returncode}: "
                  f"{open(os.path.join(ngx, 'error.log')).read()[-400:]}")
            try:
                return http("GET", base + "/api/health", timeout=2, context=ctx)
            except OSError:
                return None
        st, _, raw = wait_until(health, 10 * SCALE, "nginx's HTTPS listener")
        check(st == 200 and json.loads(raw).get("cluster") == "ok",
              f"GET /api/health through nginx: {st} {raw[:200]!r}")
        try:
            http("GET", base + "/api/health", timeout=5, context=ssl.create_default_context())
            raise Failure("the self-signed certificate was accepted with the system's CAs")
        except urllib.error.URLError as e:
            check(isinstance(e.reason, ssl.SSLCertVerificationError),
                  f"with the system's CAs: {e.reason!r}, want a verification failure")

        def session_line(sid):
            for k in "abc":
                m = re.search(rf"session {sid} created for (.*) in door", log_text(node(k)))
                if m:
                    return node(k), m.group(1)
            return None

        async def body(peers):
            ps = []
            for i in range(6):
                forged = {"X-Real-IP": "203.0.113.9"} if i == 0 else None
                p = Peer(base, query="?room=door", headers=forged, ssl_context=ctx)
                peers.append(p)
                await p.join(20)
                sid = p.location.rsplit("/", 1)[1]
                p.node, remote = await asyncio.to_thread(
                    wait_until, lambda: session_line(sid), 5 * SCALE,
                    f"the log line of session {sid}")
                check(re.fullmatch(rf"{re.escape(VETH)} \(via 127\.0\.0\.1:\d+\)", remote),
                      f"session {sid} on {p.node.letter.upper()} created for {remote!r}, want "
                      f"'{VETH} (via 127.0.0.1:PORT)'" + (" (the offer had a forged "
                                                          "X-Real-IP)" if forged else ""))
                ps.append(p)
            spread = {k: sum(p.node.letter == k for p in ps) for k in "abc"}
            check(sum(1 for v in spread.values() if v) >= 2,
                  f"6 offers through nginx all landed on one node: {spread}")
            out["spread"] = spread
            pair = next(((p, q) for p in ps for q in ps if p.node is not q.node
                         and p.user["id"] != q.user["id"]), None)
            check(pair, "no two peers with different users on different nodes")
            p, q = pair
            tp, tq = Tape(p), Tape(q)
            for a, b, tb, ta in ((p, q, tq, tp), (q, p, tp, tq)):
                text = f"door {a.node.letter}->{b.node.letter} {random.randrange(10**6)}"
                a.post(text)
                mine = await ta.text(text, 10)
                got = await tb.text(text, 10)
                check(got["id"] == mine["id"], f"{text!r}: id {mine['id']} at the sender, "
                      f"{got['id']} at the receiver")
            for x in ps:
                await x.close()

            # straight to B, forged X-Real-IP: from VETH (untrusted), then
            # from 127.0.0.1 (trusted: nginx's address)
            for source, real, want in ((VETH, "203.0.113.7", "{src}:{port}"),
                                       ("127.0.0.1", "198.51.100.7",
                                        "{real} (via {src}:{port})")):
                st, sport = await asyncio.to_thread(bad_offer_from, source, node("b"), real)
                check(st == 400, f"an offer without a data channel straight to B from "
                      f"{source}: {st}")
                line = "rejected an offer from " + \
                    want.format(src=source, port=sport, real=real) + ": no application m-line"
                await asyncio.to_thread(wait_until, lambda: line in log_text(node("b")),
                                        5 * SCALE, f"B's log line {line!r}")
            check("203.0.113.7" not in log_text(node("b")),
                  "B believed X-Real-IP from an address it does not trust")

            # C refuses connections: nginx passes the offers on
            c.kill(signal.SIGKILL)
            check(c.wait_exit(10) == SIGKILL_STATUS, "node C's status after SIGKILL")
            with open(access) as f:
                mark = len(f.readlines())
            for i in range(4):
                x = Peer(base, query="?room=door", ssl_context=ctx)
                peers.append(x)
                await x.join(20)
            with open(access) as f:
                tried = [ACCESS_RTC.search(line) for line in f.readlines()[mark:]]
            tried = [(m.group(1), m.group(2), m.group(3)) for m in tried if m]
            check(len(tried) == 4 and all(t[0] == "201" for t in tried),
                  f"offers through nginx with C down: {tried}")
            skipped = [t for t in tried if t[1].startswith(f"127.0.0.1:{c.port}, ")]
            check(skipped and all(t[2].startswith("502, ") for t in skipped),
                  f"no offer was tried on C (127.0.0.1:{c.port}) and passed on: {tried}")
            out["skipped"] = skipped[0]

        arun(body)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for name in ("error.log", "access.log"):
            if os.path.exists(os.path.join(ngx, name)):
                shutil.copy(os.path.join(ngx, name), os.path.join(LOG_DIR, "cluster-nginx-" + name))
        if c.status() is not None:
            c.start(wait_healthy=False)
    took = c.wait_health(200, "ok", 30)
    print(f"    offers through nginx per node {out['spread']}; with C killed one went "
          f"node={out['skipped'][1]} ({out['skipped'][2]}); C back in {took:.1f} s", flush=True)



@test(timeout=60)
def delete_rtc_burst_of_unknown_ids_leaves_http_answering():
    """Last of the suite: it spends the costly budget of 127.0.0.1 on B,
    which the rooms API's checks draw on too.

    A stranger's burst of DELETE /api/rtc/ID for ids nobody holds (20,
    the costly budget's burst, from one address) on B: every node answers
    the fan-out at once, so they end in a round trip each and
    /api/health on B answers meanwhile. Before, each waited
    CLUSTER_RPC_WAIT_MS on one of B's 4 HTTP threads: health took 12 s."""
    results = []

    def one(i):
        t = time.monotonic()
        st, _, _ = http("DELETE", node("b").url + f"api/rtc/{'q' * 30}{i:02d}", timeout=30)
        results.append((st, time.monotonic() - t))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    st, _ = node("b").health()
    health = time.monotonic() - t0
    for t in threads:
        t.join()
    check(st == 200, f"/api/health on B during the burst: {st}")
    check(health < 1.0 * SCALE, f"/api/health on B took {health:.2f} s during the burst")
    check(all(s in (404, 429, 503) for s, _ in results), f"statuses: {sorted(results)}")
    slowest = max(d for _, d in results)
    check(slowest < 2.0 * SCALE, f"the slowest DELETE took {slowest:.2f} s")

if __name__ == "__main__":
    run(fixtures=[JP, FX])
