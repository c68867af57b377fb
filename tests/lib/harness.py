"""Test harness shared by the Python suites: a tiny runner, a chatd process
and chat-client processes, all real, all on 127.0.0.1.

Runner: decorate functions with @test (optionally @test(timeout=...)); run()
executes the ones named on the command line (or all), each under a timeout,
prints "ok NAME (S s)", "FAIL NAME: reason" or "skip NAME: reason", and ends
with "N passed, N failed, N skipped". Exit status 1 when anything failed.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CHATD_BIN = os.environ.get("CHATD_BIN", os.path.join(ROOT, "build/chatd"))
CHAT_CLIENT_BIN = os.environ.get("CHAT_CLIENT_BIN", os.path.join(ROOT, "build/chat-client"))
LOG_DIR = os.environ.get("TEST_LOG_DIR", os.path.join(ROOT, "build/test-logs"))
SCALE = float(os.environ.get("TEST_SCALE", "1"))  # ASan runs use a smaller scale


class Skip(Exception):
    pass


class Failure(Exception):
    pass


def check(cond, reason):
    if not cond:
        raise Failure(reason)


_tests = []


def test(fn=None, *, timeout=120):
    def register(f):
        _tests.append((f.__name__, f, timeout))
        return f
    return register(fn) if fn else register


def run():
    wanted = set(sys.argv[1:])
    passed = failed = skipped = 0
    for name, fn, timeout in _tests:
        if wanted and name not in wanted:
            continue
        result = {}

        def body():
            try:
                fn()
                result["ok"] = True
            except Skip as e:
                result["skip"] = str(e)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                result["error"] = f"{type(e).__name__}: {e}"
                result["trace"] = traceback.format_exc()

        start = time.monotonic()
        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join(timeout * max(SCALE, 1))
        took = time.monotonic() - start
        if t.is_alive():
            print(f"FAIL {name}: timed out after {took:.0f} s", flush=True)
            failed += 1
            cleanup_processes()
            continue
        if "skip" in result:
            print(f"skip {name}: {result['skip']}", flush=True)
            skipped += 1
        elif result.get("ok"):
            print(f"ok {name} ({took:.1f} s)", flush=True)
            passed += 1
        else:
            print(f"FAIL {name}: {result.get('error')}", flush=True)
            sys.stdout.write("    " + result.get("trace", "").replace("\n", "\n    ") + "\n")
            failed += 1
        cleanup_processes()
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    sys.exit(1 if failed else 0)


_live = []


def cleanup_processes():
    while _live:
        p = _live.pop()
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


class Chatd:
    """A chatd process on 127.0.0.1 with a private data dir."""

    def __init__(self, name, *args, env=None, ice="127.0.0.1"):
        os.makedirs(LOG_DIR, exist_ok=True)
        self.data = tempfile.mkdtemp(prefix="chatd-test-")
        self.log_path = os.path.join(LOG_DIR, f"{name}.chatd.log")
        self.log = open(self.log_path, "w")
        cmd = [CHATD_BIN, "--listen", "127.0.0.1:0", "--data-dir", self.data]
        if ice:
            cmd += ["--ice-address", ice]
        cmd += list(args)
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, env=e,
                                     text=True)
        _live.append(self.proc)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        if not m:
            self.proc.kill()
            raise Failure(f"chatd did not start: {line!r}; log: {self.tail()}")
        self.url = m.group(1)
        if not self.url.endswith("/"):
            self.url += "/"

    def tail(self, n=30):
        self.log.flush()
        with open(self.log_path) as f:
            return "".join(f.readlines()[-n:])

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failure("chatd did not exit within %d s of SIGTERM" % timeout)
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)
        return rc

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def thread_count(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def metrics(self):
        text = http("GET", self.url + "metrics")[2].decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A PostgreSQL server of one test's own (scripts/pg.sh), for tests that
    stop and start it mid-run. Raises Skip without PostgreSQL 15."""

    SCRIPT = os.path.join(ROOT, "scripts", "pg.sh")

    def __init__(self):
        pgbin = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
        if not os.path.exists(os.path.join(pgbin, "pg_ctl")) or not shutil.which("psql"):
            raise Skip("no PostgreSQL 15 binaries")
        self.dir = tempfile.mkdtemp(prefix="chatd-pg-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.url = self._pg("start", self.dir, str(self.port))

    def _pg(self, *args):
        r = subprocess.run([self.SCRIPT, *args], capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"pg.sh {args[0]} failed: {r.stderr}")
        return r.stdout.strip()

    def stop(self):
        self._pg("stop", self.dir)

    def start(self):
        self._pg("start", self.dir, str(self.port))

    def remove(self):
        subprocess.run([self.SCRIPT, "stop", self.dir], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def http(method, url, body=None, headers=None, timeout=10):
    """Returns (status, headers, body bytes); never raises on HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def raw_http(port, data, timeout=5):
    """Sends raw bytes to 127.0.0.1:port and returns what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
        except socket.timeout:
            pass
    return b"".join(chunks)


class Client:
    """A chat-client process: stdin is a pipe, stdout lines are collected."""

    def __init__(self, url, *args):
        cmd = [CHAT_CLIENT_BIN, "--url", url] + list(args)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        _live.append(self.proc)
        self.lines = []
        self.err_lines = []
        self.cond = threading.Condition()
        self.connected = False
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self):
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.rstrip(b"\n").decode("utf-8", "replace"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_err(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.err_lines.append(line)
                if "connected" in line:
                    self.connected = True
                self.cond.notify_all()

    def wait_connected(self, timeout=20):
        with self.cond:
            ok = self.cond.wait_for(lambda: self.connected or self.proc.poll() is not None,
                                    timeout)
        check(ok and self.connected, f"chat-client did not connect: {self.err_lines}")

    def wait_lines(self, n, timeout=60):
        """Waits for n lines, the process's end, or the timeout."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.lines) >= n or self.proc.poll() is not None,
                               timeout)
            return list(self.lines)

    def send(self, text):
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def send_many(self, texts):
        """Writes lines on a thread (the pipe may fill); returns the thread."""
        def writer():
            try:
                for t in texts:
                    self.proc.stdin.write(t.encode() + b"\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
        th = threading.Thread(target=writer, daemon=True)
        th.start()
        return th

    def finish(self, timeout=30):
        """Closes stdin (end of input) and returns the exit status."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failure(f"chat-client did not exit after end of input: {self.err_lines}")
