"""The toolkit every Python suite uses: a runner, chatd and chat-client
processes, a private PostgreSQL, the real JSONPlaceholder, HTTP helpers.
All real, all on 127.0.0.1.

Runner: decorate functions with @test (optionally @test(timeout=...)); run()
executes the ones named on the command line (or all) and prints "ok NAME
(S s)", "FAIL NAME: reason" or "skip NAME: reason", then "N passed, N
failed, N skipped"; exit status 1 when anything failed. A name given on the
command line that is no test is a failure.

Each test runs in a forked child process that leads a process group of its
own; every process the test starts (chatd, chat-client, JSONPlaceholder,
valgrind, ...) is in that group. When the test ends, the group is killed
(SIGKILL), so nothing a test started outlives it. A test that runs past its
timeout (scaled by TEST_SCALE) is killed the same way and reported as
"FAIL NAME: timed out after N s": it cannot run on into the next test.
Processes that leave the group on purpose (PostgreSQL's pg_ctl daemonizes)
are cleaned up by the commands a test registers with on_kill().

Fixtures shared by the tests of one run (a JSONPlaceholder server, the
shared chatd of the aiortc suite) are started in the runner process before
the first test: run(fixtures=[...]). A fixture with a `check` name reports
its stop() as one more test line (e.g. "chatd exits 0 on SIGTERM").
"""

import asyncio
import atexit
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
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
PY = "/usr/bin/python3"  # Debian's Python: it has aiortc and PyJWT


class Skip(Exception):
    pass


class Failure(Exception):
    pass


def check(cond, reason):
    if not cond:
        raise Failure(reason)


def summary(passed, failed, skipped):
    """The closing line every runner prints (tests/run.py reads it)."""
    return f"{passed} passed, {failed} failed, {skipped} skipped"


SUMMARY_RE = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$")


# --------------------------------------------------------------------------
# runner

_tests = []


def test(fn=None, *, timeout=120):
    def register(f):
        _tests.append((f.__name__, f, timeout))
        return f
    return register(fn) if fn else register


class Fixture:
    """Something the tests of one run share, started once in the runner
    process. CHECK, when set, names a test line for what stop() checks."""

    check = None

    def start(self):
        pass

    def stop(self):
        pass


_kill_file = None   # in a test process: where on_kill() commands are written


def on_kill(argv):
    """Registers a command the runner runs if this test is killed (timeout,
    crash) before it cleaned up itself: for processes that leave the test's
    process group. Harmless outside a test process."""
    if _kill_file:
        with open(_kill_file, "a") as f:
            f.write(json.dumps(list(argv)) + "\n")


def _run_kill_commands(path):
    try:
        with open(path) as f:
            cmds = [json.loads(line) for line in f if line.strip()]
    except OSError:
        return
    for argv in cmds:
        try:
            subprocess.run(argv, capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass


def _body_result(fn):
    try:
        fn()
        return {"ok": True}
    except Skip as e:
        return {"skip": str(e)}
    except Exception as e:  # noqa: BLE001 - every failure is reported
        return {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}


def _killpg(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_current_pgid = [None]


def _on_term(signum, frame):
    """The runner is told to stop (tests/run.py's suite timeout): take the
    running test's processes along."""
    if _current_pgid[0]:
        _killpg(_current_pgid[0])
    os._exit(128 + signum)


def run_one(name, fn, timeout):
    """Runs FN in a forked child that leads its own process group; returns
    ("ok"|"skip"|"fail", message, seconds)."""
    global _kill_file
    limit = timeout * max(SCALE, 1)
    kill_file = tempfile.mktemp(prefix=f"chatd-test-{name}-", suffix=".kill")
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the test process
        code = 0
        try:
            os.close(r)
            os.setpgid(0, 0)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _live.clear()          # the runner's processes are not this test's
            _kill_file = kill_file
            result = _body_result(fn)
            cleanup_processes()
            data = json.dumps(result).encode()
            while data:
                data = data[os.write(w, data):]
        except BaseException:  # noqa: BLE001 - never return into the runner
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(w)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    _current_pgid[0] = pid
    chunks = []
    timed_out = False
    deadline = start + limit
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([r], [], [], left)
        if ready:
            c = os.read(r, 65536)
            if not c:
                break
            chunks.append(c)
    os.close(r)
    if timed_out:
        _killpg(pid)
    _, status = os.waitpid(pid, 0)
    took = time.monotonic() - start
    # whatever the test left running goes with it
    _killpg(pid)
    _current_pgid[0] = None
    if timed_out or not chunks:
        _run_kill_commands(kill_file)
    try:
        os.remove(kill_file)
    except OSError:
        pass
    if timed_out:
        return "fail", f"timed out after {limit:.0f} s (its processes were killed)", took
    try:
        result = json.loads(b"".join(chunks))
    except ValueError:
        return "fail", (f"the test process ended without a result "
                        f"({_describe_status(status)})"), took
    if "skip" in result:
        return "skip", result["skip"], took
    if result.get("ok"):
        return "ok", "", took
    trace = result.get("trace", "")
    return "fail", result.get("error") + ("\n    " + trace.replace("\n", "\n    ")
                                          if trace else ""), took


def _describe_status(status):
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def run(fixtures=()):
    """Runs the tests named on the command line (all by default) and exits."""
    wanted = sys.argv[1:]
    known = {name for name, _, _ in _tests}
    passed = failed = skipped = 0
    for name in wanted:
        if name not in known:
            print(f"FAIL {name}: no such test (tests: {', '.join(sorted(known))})", flush=True)
            failed += 1
    signal.signal(signal.SIGTERM, _on_term)
    started = []
    setup_error = None
    for fx in fixtures:
        try:
            fx.start()
            started.append(fx)
        except Exception as e:  # noqa: BLE001
            setup_error = f"{type(fx).__name__}: {type(e).__name__}: {e}"
            break
    if setup_error:
        print(f"FAIL setup: {setup_error}", flush=True)
        failed += 1
    else:
        for name, fn, timeout in _tests:
            if wanted and name not in wanted:
                continue
            outcome, message, took = run_one(name, fn, timeout)
            if outcome == "ok":
                print(f"ok {name} ({took:.1f} s)", flush=True)
                passed += 1
            elif outcome == "skip":
                print(f"skip {name}: {message}", flush=True)
                skipped += 1
            else:
                print(f"FAIL {name}: {message}", flush=True)
                failed += 1
    for fx in reversed(started):
        try:
            fx.stop()
            if fx.check and not setup_error:
                print(f"ok {fx.check}", flush=True)
                passed += 1
        except Exception as e:  # noqa: BLE001
            if fx.check:
                print(f"FAIL {fx.check}: {e}", flush=True)
            else:
                print(f"FAIL teardown {type(fx).__name__}: {e}", flush=True)
            failed += 1
    print(summary(passed, failed, skipped), flush=True)
    sys.exit(1 if failed else 0)


def wait_until(pred, timeout, what, interval=0.1):
    """Polls PRED until it returns something true (returned); Failure after
    TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failure(f"{what} not within {timeout} s")
        time.sleep(interval)


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


def pid_alive(pid):
    """True while PID exists and is not a zombie (works for processes that
    are not our children, e.g. a fixture's chatd seen from a test)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Chatd:
    """A chatd process on 127.0.0.1 with a private data dir."""

    def __init__(self, name, *args, env=None, ice="127.0.0.1", cafile=None):
        os.makedirs(LOG_DIR, exist_ok=True)
        # HTTPS (--tls-cert): requests verify the server against cafile
        self.ssl = ssl.create_default_context(cafile=cafile) if cafile else None
        self.data = tempfile.mkdtemp(prefix="chatd-test-")
        self.log_path = os.path.join(LOG_DIR, f"{name}.chatd.log")
        self.log = open(self.log_path, "w")
        cmd = [CHATD_BIN, "--listen", "127.0.0.1:0", "--data-dir", self.data]
        if ice:
            cmd += ["--ice-address", ice]
        if os.environ.get("CHATD_LOG_LEVEL"):
            cmd += ["--log-level", os.environ["CHATD_LOG_LEVEL"]]
        cmd += list(args)
        e = dict(os.environ)
        # Every test client comes from 127.0.0.1: the per-address offer rate
        # (default 5/s) is lifted unless a test sets it (flag or env).
        e.setdefault("CHATD_OFFER_RATE", "100000")
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, env=e,
                                     text=True)
        _live.append(self.proc)
        self.owner = os.getpid()
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (https?://\S+)", line)
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
        if os.getpid() != self.owner:  # a fixture's chatd seen from a test
            return pid_alive(self.proc.pid)
        return self.proc.poll() is None

    def health(self):
        """(status, body as JSON) of GET /api/health."""
        status, _, body = http("GET", self.url + "api/health", context=self.ssl)
        return status, json.loads(body)

    def wait_health(self, want=200, timeout=15):
        """Waits until /api/health answers WANT (chatd answers 503 until it
        has reached the API once); returns its body."""
        got = {}

        def ok():
            got["h"] = self.health()
            return got["h"][0] == want
        try:
            wait_until(ok, timeout, f"/api/health {want}")
        except Failure:
            raise Failure(f"/api/health is {got.get('h')}, not {want}, after {timeout} s; "
                          f"log: {self.tail(5)}")
        return got["h"][1]

    def term(self, timeout=30):
        """SIGTERM and wait; returns the exit status and keeps the data dir
        (unlike stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failure(f"chatd did not exit within {timeout} s of SIGTERM")

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

    def discard(self):
        """Kills chatd if it still runs and removes its data dir (cleanup
        after a failure)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.data, ignore_errors=True)

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
        on_kill([self.SCRIPT, "stop", self.dir])  # pg_ctl leaves our process group
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


def start_chatd(name, *args, api=None, healthy=True, **kw):
    """chatd in chat mode against API (default: the run's JSONPlaceholder),
    with quick draw retries; waits until it is healthy unless told not to."""
    d = Chatd(name, "--api-url", api or jsonplaceholder(), "--draw-backoff-ms", "100", *args,
              **kw)
    if healthy:
        d.wait_health(200, timeout=30)
    return d


class JsonPlaceholder(Fixture):
    """The real JSONPlaceholder (scripts/jsonplaceholder.sh) on 127.0.0.1.
    It exits on its own when the process that started it is gone."""

    SCRIPT = os.path.join(ROOT, "scripts", "jsonplaceholder.sh")

    def __init__(self, port=None):
        self.port = port
        self.url = None

    def start(self):
        self.port = self.port or free_port()
        on_kill([self.SCRIPT, "stop", str(self.port)])
        r = subprocess.run([self.SCRIPT, "start", str(self.port)], capture_output=True,
                           text=True, timeout=60,
                           env=dict(os.environ, JP_PARENT_PID=str(os.getpid())))
        if r.returncode != 0:
            raise Failure(f"jsonplaceholder did not start: {r.stderr[-500:]}")
        self.url = r.stdout.strip().splitlines()[-1]
        atexit.register(self.stop)
        return self

    def stop(self):
        if self.url:
            subprocess.run([self.SCRIPT, "stop", str(self.port)], capture_output=True,
                           timeout=30)
            self.url = None

    def get(self, path):
        status, _, body = http("GET", self.url.rstrip("/") + path)
        check(status == 200, f"JSONPlaceholder {path} answered {status}")
        return json.loads(body)


_jp = JsonPlaceholder()


def shared_jsonplaceholder():
    """The fixture of the run's JSONPlaceholder (pass it to run(fixtures=))."""
    return _jp


def jsonplaceholder():
    """URL of the run's JSONPlaceholder; started on first use (in the
    runner when the suite lists it among its fixtures, else in the test)."""
    if not _jp.url:
        _jp.start()
    return _jp.url


def http(method, url, body=None, headers=None, timeout=10, context=None):
    """Returns (status, headers, body bytes); never raises on HTTP errors.
    CONTEXT: the ssl.SSLContext for an https URL (default: the system's
    CAs; e.g. one trusting a test CA or a self-signed certificate)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


async def ahttp(*args, **kw):
    """http() from asyncio code, on the default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: http(*args, **kw))


def url_port(url):
    """The port of an http://127.0.0.1:PORT/ URL."""
    return int(url.rsplit(":", 1)[1].split("/")[0])


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

class JsonClient(Client):
    """chat-client --json: every message from chatd is one JSON line."""

    def __init__(self, url, *args):
        super().__init__(url, "--json", *args)

    def msgs(self):
        with self.cond:
            lines = list(self.lines)
        return [json.loads(ln) for ln in lines]

    def wait_msg(self, pred, timeout=15, what="message"):
        deadline = time.monotonic() + timeout
        while True:
            for m in self.msgs():
                if pred(m):
                    return m
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and not any(pred(m)
                                                                   for m in self.msgs()):
                raise Failure(f"no {what} within {timeout} s; got {self.msgs()[-5:]}, "
                              f"stderr {self.err_lines[-5:]}")
            with self.cond:
                self.cond.wait(min(left, 0.2))

    def welcome(self, timeout=20):
        return self.wait_msg(lambda m: m.get("type") == "welcome", timeout, "welcome")

    def session_id(self):
        return self.welcome()["session"]

    def exit_status(self, timeout=20):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"chat-client still running after {timeout} s: {self.err_lines[-5:]}")


def distinct_clients(url, n, tries=15):
    """N connected JsonClients with N different users (a draw may repeat a
    user, and the post rate limit is per user)."""
    got = []
    for _ in range(tries):
        c = JsonClient(url)
        c.wait_connected()
        uid = c.welcome()["user"]["id"]
        if all(o.welcome()["user"]["id"] != uid for o in got):
            got.append(c)
            if len(got) == n:
                return got
        else:
            c.finish()
    raise Failure(f"no {n} distinct users in {tries} connections")
