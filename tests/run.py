#!/usr/bin/python3
"""Runs every test suite of chatd and prints one line per suite and a final
"N passed, N failed, N skipped" line. Called by `make test` (scripts/test.sh).

    tests/run.py [--only SUITE[,SUITE]] [--list] [--build DIR]

A SUITE given to --only may be a shell pattern: --only '*-asan'.

--build DIR runs the suites against DIR/chatd, DIR/chat-client and the unit
binaries in DIR/tests instead of build/ (scripts/coverage.py uses it with
build/cov, the gcov build).

Suites (in order): unit, integration, integration-chat, fault, interop-aiortc, bench-smoke,
interop-chromium, browser, fuzz, then unit-asan, integration-asan,
integration-chat-asan, fault-asan, interop-aiortc-asan on the ASan+UBSan build,
then churn-asan, churn-valgrind, load and load-asan (tests/load), and
coverage (scripts/coverage.py: the suites on the gcov build, then the line
and branch floors). A private PostgreSQL server is started for the whole run and its URL
exported as CHATD_TEST_PG_URL.

Counting: Criterion suites are read from their TAP output (a skipped test is
counted as skipped, a crash as failed); Python/Node/shell suites end with
their own "N passed, N failed, N skipped" line. A suite whose process exits
non-zero without reporting a failure counts one extra failure, so a crash
can never pass silently.
"""

import fnmatch
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.chdir(ROOT)
PY = "/usr/bin/python3"  # Debian's Python: it has aiortc and PyJWT
LOGS = os.path.join(ROOT, "build", "test-logs")
COUNT_RE = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_tap(binary, env, log):
    """One Criterion binary; returns (passed, failed, skipped)."""
    try:
        p = subprocess.run([binary, "--tap", "-j2"], env=env, capture_output=True, text=True,
                           timeout=600)
    except subprocess.TimeoutExpired:
        print(f"    FAIL {os.path.basename(binary)}: timed out after 600 s", flush=True)
        return 0, 1, 0
    log.write(f"$ {binary}\n{p.stdout}\n{p.stderr}\n")
    passed = failed = skipped = 0
    for line in p.stdout.splitlines():
        if line.startswith("not ok"):
            failed += 1
            print(f"    FAIL {os.path.basename(binary)}: {line}", flush=True)
        elif line.startswith("ok"):
            if "# SKIP" in line:
                skipped += 1
            else:
                passed += 1
    if p.returncode != 0 and failed == 0:
        failed += 1
        print(f"    FAIL {os.path.basename(binary)}: exit status {p.returncode}"
              f" without a failed test: {p.stderr.strip()[-300:]}", flush=True)
    return passed, failed, skipped


def run_counted(cmd, env, log, timeout=1800):
    """A runner that prints 'ok/FAIL/skip' lines and a final count line."""
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = "suite timed out", -1
    log.write(f"$ {' '.join(cmd)}\n{out}\n{err}\n")
    counts = None
    for line in out.splitlines():
        m = COUNT_RE.match(line.strip())
        if m:
            counts = [int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)]
        elif line.startswith(("FAIL", "    ", "coverage:")):
            print("    " + line, flush=True)
    if counts is None:
        print(f"    FAIL {' '.join(cmd)}: no result line (exit {rc}): {err.strip()[-500:]}",
              flush=True)
        return 0, 1, 0
    if rc != 0 and counts[1] == 0:
        counts[1] += 1
        print(f"    FAIL {' '.join(cmd)}: exit status {rc}", flush=True)
    return tuple(counts)


def main():
    only = None
    if "--only" in sys.argv:
        only = set(sys.argv[sys.argv.index("--only") + 1].split(","))
    os.makedirs(LOGS, exist_ok=True)
    base_env = dict(os.environ)
    base_env.setdefault("FUZZ_SECONDS", "30")
    unit_dir = "build/tests"
    log_suffix = ""
    if "--build" in sys.argv:
        build = os.path.join(ROOT, sys.argv[sys.argv.index("--build") + 1])
        base_env["CHATD_BIN"] = os.path.join(build, "chatd")
        base_env["CHAT_CLIENT_BIN"] = os.path.join(build, "chat-client")
        unit_dir = os.path.join(build, "tests")
        # Logs of this run go beside, not over, those of the normal run.
        log_suffix = "-" + os.path.basename(build.rstrip("/"))
        base_env["TEST_LOG_DIR"] = os.path.join(LOGS, log_suffix[1:])
        base_env["ARTIFACTS_DIR"] = os.path.join(ROOT, "build", "artifacts", log_suffix[1:])

    asan_env = dict(base_env)
    asan_env.update({
        "CHATD_BIN": os.path.join(ROOT, "build/asan/chatd"),
        "CHAT_CLIENT_BIN": os.path.join(ROOT, "build/asan/chat-client"),
        "TEST_SCALE": "2",
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    })
    # Criterion's own runner leaks a few bytes at exit; unit binaries check
    # leaks per test (see docs/TESTING.md), so the exit-time report must not
    # turn every passing binary into a failure.
    unit_asan_env = dict(asan_env)
    unit_asan_env["LSAN_OPTIONS"] = "exitcode=0"
    # Criterion 2.4.1 reports a test as "ok" when ASan ends it with
    # _exit(1) (a heap overflow passed, checked with a test of one line);
    # an abort is a signal, which it reports as a failure.
    unit_asan_env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=1:halt_on_error=1"

    churn_asan_env = dict(asan_env)
    churn_asan_env["CHAT_CLIENT_BIN"] = base_env.get("CHAT_CLIENT_BIN",
                                                     os.path.join(ROOT, "build/chat-client"))

    suites = [
        ("unit", "tap", unit_dir, base_env),
        ("integration", "cmd", [PY, "tests/integration/test_transport.py"], base_env),
        ("integration-chat", "cmd", [PY, "tests/integration/test_chat.py"], base_env),
        ("fault", "cmd", [PY, "tests/fault/test_fault.py"], base_env),
        ("interop-aiortc", "cmd", [PY, "tests/interop/test_aiortc.py"], base_env),
        ("bench-smoke", "cmd", [PY, "tests/integration/test_bench.py"], base_env),
        ("interop-chromium", "cmd", ["tests/interop/run_chromium.sh"], base_env),
        ("browser", "cmd", ["tests/browser/run.sh"], base_env),
        ("fuzz", "cmd", ["scripts/fuzz.sh"], base_env),
        ("unit-asan", "tap", "build/asan/tests", unit_asan_env),
        ("integration-asan", "cmd", [PY, "tests/integration/test_transport.py"], asan_env),
        ("integration-chat-asan", "cmd", [PY, "tests/integration/test_chat.py"], asan_env),
        ("fault-asan", "cmd", [PY, "tests/fault/test_fault.py"], asan_env),
        ("interop-aiortc-asan", "cmd", [PY, "tests/interop/test_aiortc.py"], asan_env),
        # tests/load: 2000 churn cycles on the ASan chatd (release clients:
        # the server is under test), the same 2000 under valgrind (about
        # 60 ms a cycle there), and the load tests
        ("churn-asan", "cmd", [PY, "tests/load/test_churn.py"], churn_asan_env),
        ("churn-valgrind", "cmd", [PY, "tests/load/test_churn.py",
                                   "churn_cycles_return_to_baseline"],
         dict(base_env, CHURN_VALGRIND="1", CHURN_CYCLES="2000")),
        ("load", "cmd", [PY, "tests/load/test_load.py"], base_env),
        ("load-asan", "cmd", [PY, "tests/load/test_load.py",
                              "thousand_concurrent_bad_http_requests"], asan_env),
        # The gcov build (make MODE=cov): the suites again, then the floors.
        ("coverage", "cmd", [PY, "scripts/coverage.py"], base_env),
    ]
    if "--list" in sys.argv:
        for s in suites:
            print(s[0])
        return 0

    pg_dir = tempfile.mkdtemp(prefix="chatd-pg-")
    pg_url = None
    try:
        p = subprocess.run(["scripts/pg.sh", "start", pg_dir, str(free_port())],
                           capture_output=True, text=True, timeout=120)
        if p.returncode == 0:
            pg_url = p.stdout.strip().splitlines()[-1]
        else:
            print(f"    private PostgreSQL did not start: {p.stderr.strip()}", flush=True)
        total = [0, 0, 0]
        for name, kind, what, env in suites:
            if only and not any(fnmatch.fnmatchcase(name, o) for o in only):
                continue
            env = dict(env)
            if pg_url:
                env["CHATD_TEST_PG_URL"] = pg_url
            start = time.monotonic()
            with open(os.path.join(LOGS, f"suite-{name}{log_suffix}.log"), "w") as log:
                if kind == "tap":
                    counts = [0, 0, 0]
                    bins = sorted(glob.glob(os.path.join(what, "test_*")))
                    if not bins:
                        counts[1] += 1
                        print(f"    FAIL {name}: no test binaries in {what}", flush=True)
                    for b in bins:
                        c = run_tap(b, env, log)
                        counts = [x + y for x, y in zip(counts, c)]
                else:
                    counts = list(run_counted(what, env, log))
            total = [x + y for x, y in zip(total, counts)]
            print(f"suite {name}: {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped "
                  f"({time.monotonic() - start:.0f} s)", flush=True)
    finally:
        subprocess.run(["scripts/pg.sh", "stop", pg_dir], capture_output=True, timeout=60)
        shutil.rmtree(pg_dir, ignore_errors=True)
    print(f"{total[0]} passed, {total[1]} failed, {total[2]} skipped", flush=True)
    return 1 if total[1] else 0


if __name__ == "__main__":
    sys.exit(main())
