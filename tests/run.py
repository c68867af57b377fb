#!/usr/bin/python3
"""Runs the test suites of chatd and prints one line per suite and a final
"N passed, N failed, N skipped" line. Called by `make test` (scripts/test.sh).

    tests/run.py [--only SUITE[,SUITE]] [--list] [--cov] [--build DIR] [--serial]

A SUITE given to --only may be a shell pattern: --only '*-asan'.

--cov runs the suites that measure coverage (unit, integration,
integration-chat, fault, interop-aiortc, interop-chromium, browser, cluster) on the
gcov build, build/cov, once: their counters are reset first, and the
`coverage` suite then reports on them (scripts/coverage.py --no-run)
instead of running them a second time. `make test` uses it. Without --cov
those suites run on build/ (the release build), and `coverage` runs them
itself on build/cov.

--build DIR runs those suites against DIR/chatd, DIR/chat-client and the
unit binaries in DIR/tests (scripts/coverage.py uses --build build/cov).

The suites, in the order of SUITES below: harness (the Python test
runner's own promises: tests/lib/test_harness.py), the product on the main build
(unit, integration, integration-chat, fault, interop-aiortc, bench-smoke,
readme, interop-chromium, browser, cluster), package (make install, the man
pages, make deb and the package installed, run and purged; release build),
fuzz (corpus replay and a short run of each target), the same suites on the ASan+UBSan build (unit-asan,
integration-asan, integration-chat-asan, fault-asan, interop-aiortc-asan),
abuse and abuse-asan (tests/abuse: issue 9's attacks, each with a bound),
then tests/load: churn-asan, churn-valgrind, load, load-asan, and last
coverage. A private PostgreSQL server is started for the whole run and its
URL exported as CHATD_TEST_PG_URL.

Two at a time: STAGES pairs a suite that mostly waits (fault: timeouts and
ICE consent; integration-chat; bench-smoke) with one that computes, so that
the 2 cores are used; each stage has two lanes that run side by side, each
lane its suites in turn. churn-asan shares a stage with fault-asan (its checks are counts of its own
chatd); churn-valgrind and the load suites (setup-time ratios, the log
writer's rate) always run alone. --serial runs everything one suite at a
time.

Counting: Criterion suites are read from their TAP output (a skipped test is
counted as skipped, a crash as failed); Python/Node/shell suites end with
their own "N passed, N failed, N skipped" line. A suite whose process exits
non-zero without reporting a failure counts one extra failure, so a crash
can never pass silently. A suite's output is printed when it ends (so two
suites running side by side do not interleave), with its time.
"""

import fnmatch
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.chdir(ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from harness import PY, SUMMARY_RE, free_port, summary  # noqa: E402

LOGS = os.path.join(ROOT, "build", "test-logs")

# What scripts/coverage.py measures; with --cov these run on build/cov.
COV_SUITES = ["unit", "integration", "integration-chat", "fault", "interop-aiortc",
              "interop-chromium", "browser", "cluster"]
# Throughput, not correctness of a unit: run by the load suites, on the
# release (load) and ASan (load-asan) builds.
RATE_TESTS = ["test_store_rate"]

# Stages: each is two lanes run side by side; a lane runs its suites in
# turn. A suite not named here runs alone, in SUITES order, after the stage
# that precedes it there.
STAGES = [
    (["fault"], ["unit", "integration", "interop-aiortc"]),
    # churn-asan's counts are of its own chatd (descriptors, threads,
    # associations), not of the machine; fault-asan mostly waits (consent
    # timeouts, outages), so the two share the cores
    (["fault-asan"], ["churn-asan"]),
    (["abuse", "integration-chat"], ["unit-asan", "interop-aiortc-asan"]),
    (["abuse-asan", "integration-chat-asan"], ["integration-asan", "fuzz"]),
    (["bench-smoke", "readme"], ["interop-chromium", "browser"]),
]


class Suite:
    def __init__(self, name, steps, env):
        self.name, self.steps, self.env = name, steps, env


def run_tap(binary, env, log, out):
    """One Criterion binary; returns (passed, failed, skipped)."""
    try:
        p = subprocess.run([binary, "--tap", "-j2"], env=env, capture_output=True, text=True,
                           timeout=600)
    except subprocess.TimeoutExpired:
        out.append(f"    FAIL {os.path.basename(binary)}: timed out after 600 s")
        return 0, 1, 0
    log.write(f"$ {binary}\n{p.stdout}\n{p.stderr}\n")
    passed = failed = skipped = 0
    for line in p.stdout.splitlines():
        if line.startswith("not ok"):
            failed += 1
            out.append(f"    FAIL {os.path.basename(binary)}: {line}")
        elif line.startswith("ok"):
            if "# SKIP" in line:
                skipped += 1
            else:
                passed += 1
    if p.returncode != 0 and failed == 0:
        failed += 1
        out.append(f"    FAIL {os.path.basename(binary)}: exit status {p.returncode}"
                   f" without a failed test: {p.stderr.strip()[-300:]}")
    return passed, failed, skipped


def run_counted(cmd, env, log, out, timeout=1800):
    """A runner that prints 'ok/FAIL/skip' lines and a final count line. It
    runs in a session of its own; at its timeout it gets SIGTERM (the
    Python runner then kills its running test's processes), then SIGKILL."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        stdout, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                stdout, err = p.communicate(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        stdout = stdout or ""
        err, rc = f"suite timed out after {timeout} s", -1
    log.write(f"$ {' '.join(cmd)}\n{stdout}\n{err}\n")
    counts = None
    for line in stdout.splitlines():
        m = SUMMARY_RE.match(line.strip())
        if m:
            counts = [int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)]
        elif line.startswith(("FAIL", "    ", "coverage:")):
            out.append("    " + line)
    if counts is None:
        out.append(f"    FAIL {' '.join(cmd)}: no result line (exit {rc}): {err.strip()[-500:]}")
        return 0, 1, 0
    if rc != 0 and counts[1] == 0:
        counts[1] += 1
        out.append(f"    FAIL {' '.join(cmd)}: exit status {rc}")
    return tuple(counts)


def tap_binaries(spec):
    """(dir, include, exclude): the Criterion binaries of a step."""
    where, include, exclude = spec
    names = include or [os.path.basename(b) for b in glob.glob(os.path.join(where, "test_*"))]
    return [os.path.join(where, n) for n in sorted(names) if n not in exclude]


def run_suite(suite, log_suffix, pg_url):
    """Runs SUITE; returns (counts, output lines, seconds)."""
    env = dict(suite.env)
    if pg_url:
        env["CHATD_TEST_PG_URL"] = pg_url
    out = []
    counts = [0, 0, 0]
    start = time.monotonic()
    with open(os.path.join(LOGS, f"suite-{suite.name}{log_suffix}.log"), "w") as log:
        for kind, what, *step_env in suite.steps:
            env_ = dict(step_env[0], CHATD_TEST_PG_URL=pg_url) if step_env and pg_url \
                else (step_env[0] if step_env else env)
            if kind == "tap":
                bins = tap_binaries(what)
                missing = [b for b in bins if not os.access(b, os.X_OK)]
                if not bins or missing:
                    counts[1] += 1
                    out.append(f"    FAIL {suite.name}: test binaries missing in {what[0]}: "
                               f"{missing or 'none at all'}")
                for b in bins:
                    if b in missing:
                        continue
                    c = run_tap(b, env_, log, out)
                    counts = [x + y for x, y in zip(counts, c)]
            else:
                c = run_counted(what, env_, log, out)
                counts = [x + y for x, y in zip(counts, c)]
    return counts, out, time.monotonic() - start


def main():
    args = sys.argv[1:]
    only = None
    if "--only" in args:
        only = set(args[args.index("--only") + 1].split(","))
    cov = "--cov" in args
    os.makedirs(LOGS, exist_ok=True)
    base_env = dict(os.environ)
    base_env.setdefault("TEST_LOG_DIR", LOGS)
    release_env = dict(base_env, CHATD_BIN=os.path.join(ROOT, "build/chatd"),
                       CHAT_CLIENT_BIN=os.path.join(ROOT, "build/chat-client"))
    main_env = dict(base_env)
    main_build = os.path.join(ROOT, "build")
    log_suffix = ""
    build_arg = args[args.index("--build") + 1] if "--build" in args else None
    if cov:
        build_arg = "build/cov"
    if build_arg:
        main_build = os.path.join(ROOT, build_arg)
        main_env["CHATD_BIN"] = os.path.join(main_build, "chatd")
        main_env["CHAT_CLIENT_BIN"] = os.path.join(main_build, "chat-client")
        # Logs of this run go beside, not over, those of the normal run.
        log_suffix = "-" + os.path.basename(main_build.rstrip("/"))
        main_env["TEST_LOG_DIR"] = os.path.join(LOGS, log_suffix[1:])
        main_env["ARTIFACTS_DIR"] = os.path.join(ROOT, "build", "artifacts", log_suffix[1:])
    unit_dir = os.path.join(main_build, "tests")

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
    churn_asan_env["CHAT_CLIENT_BIN"] = release_env["CHAT_CLIENT_BIN"]

    # make test: a short fuzz run per target after the corpus replay (make
    # fuzz runs FUZZ_SECONDS, 30 by default).
    fuzz_env = dict(base_env, FUZZ_SECONDS=os.environ.get("TEST_FUZZ_SECONDS", "5"))

    def py(path, *tests):
        return ("cmd", [PY, path, *tests])

    suites = [
        # the runner every Python suite uses: timeouts stop a test, counts
        Suite("harness", [py("tests/lib/test_harness.py")], base_env),
        Suite("unit", [("tap", (unit_dir, None, RATE_TESTS))], main_env),
        Suite("integration", [py("tests/integration/test_transport.py"),
                              py("tests/integration/test_candidates.py"),
                              py("tests/integration/test_admission.py"),
                              # the one-port transport: strangers, NAT, 2000 peers
                              py("tests/integration/test_mux.py"),
                              py("tests/integration/test_icetcp.py"),
                              # HTTPS: the test CA, SIGHUP reloads, chat-client --cacert
                              py("tests/integration/test_tls.py")], main_env),
        Suite("integration-chat", [py("tests/integration/test_chat.py"),
                                   # issue 11: whispers, owners, kicks, catch-up, search
                                   py("tests/integration/test_rooms.py"),
                                   # and chat-client's side of it (reconnect, /w, ...)
                                   py("tests/integration/test_rooms_client.py")], main_env),
        Suite("fault", [py("tests/fault/test_fault.py")], main_env),
        Suite("interop-aiortc", [py("tests/interop/test_aiortc.py")], main_env),
        # chat-bench on the release build, like make bench
        Suite("bench-smoke", [py("tests/integration/test_bench.py")], release_env),
        # the README's own commands (make run, chat-client, the page), as written
        Suite("readme", [("cmd", ["tests/integration/readme.sh"])], release_env),
        Suite("interop-chromium", [("cmd", ["tests/interop/run_chromium.sh"])], main_env),
        Suite("browser", [("cmd", ["tests/browser/run.sh"])], main_env),
        # issue 12: three nodes on NATS JetStream and one PostgreSQL (its own
        # servers, in a network namespace for Chromium); runs alone: its
        # presence and outage checks are bounded in seconds
        Suite("cluster", [py("tests/cluster/test_cluster.py")], main_env),
        # issue 13: make install/uninstall, the man pages against --help, make
        # deb (lintian), the .deb installed here, its unit's ExecStart run as
        # systemd would, purged; on the release build, alone (it builds)
        Suite("package", [py("tests/package/test_package.py")], release_env),
        Suite("fuzz", [("cmd", ["scripts/fuzz.sh"])], fuzz_env),
        Suite("unit-asan", [("tap", ("build/asan/tests", None, RATE_TESTS))], unit_asan_env),
        Suite("integration-asan", [py("tests/integration/test_transport.py"),
                                   py("tests/integration/test_mux.py"),
                                   py("tests/integration/test_icetcp.py"),
                                   py("tests/integration/test_tls.py")], asan_env),
        Suite("integration-chat-asan", [py("tests/integration/test_chat.py"),
                                        py("tests/integration/test_rooms.py"),
                                        py("tests/integration/test_rooms_client.py")], asan_env),
        Suite("fault-asan", [py("tests/fault/test_fault.py")], asan_env),
        Suite("interop-aiortc-asan", [py("tests/interop/test_aiortc.py")], asan_env),
        # issue 9: a stranger's attacks, each with its bound (tests/abuse);
        # under ASan with smaller floods (the memory errors are the point)
        Suite("abuse", [py("tests/abuse/test_abuse.py")], main_env),
        Suite("abuse-asan", [py("tests/abuse/test_abuse.py")],
              dict(asan_env, ABUSE_BAD_OFFERS="5000", ABUSE_HALF_OPEN="1000",
                   ABUSE_FORGED="3000", ABUSE_SLOW_HTTP="500", ABUSE_DB_DOWN_S="10",
                   ABUSE_RSS_BOUNDS="0")),
        # tests/load: 2000 churn cycles on the ASan chatd (release clients:
        # the server is under test), 200 under valgrind (about 60 ms a
        # cycle there), the load tests and the log writer's 5 000 msg/s
        Suite("churn-asan", [py("tests/load/test_churn.py")], churn_asan_env),
        Suite("churn-valgrind", [py("tests/load/test_churn.py",
                                    "churn_cycles_return_to_baseline")],
              dict(release_env, CHURN_VALGRIND="1",
                   CHURN_CYCLES=os.environ.get("CHURN_VALGRIND_CYCLES", "200"))),
        Suite("load", [("tap", ("build/tests", RATE_TESTS, [])),
                       py("tests/load/test_load.py")], release_env),
        Suite("load-asan", [("tap", ("build/asan/tests", RATE_TESTS, []), unit_asan_env),
                            py("tests/load/test_load.py",
                               "thousand_concurrent_bad_http_requests")],
              asan_env),
        Suite("coverage", [("cmd", [PY, "scripts/coverage.py"])], base_env),
    ]
    if "--list" in args:
        for s in suites:
            print(s.name)
        return 0
    chosen = [s for s in suites
              if not only or any(fnmatch.fnmatchcase(s.name, o) for o in only)]
    names = [s.name for s in chosen]
    unmatched = [o for o in only or () if not any(fnmatch.fnmatchcase(s.name, o) for s in suites)]
    if unmatched:
        print(f"FAIL --only: no suite named {', '.join(unmatched)} (see --list)", flush=True)
        print(summary(0, 1, 0), flush=True)
        return 1
    if cov:
        # Coverage of this run's suites; without all of them it would be
        # the coverage of a part, so then coverage.py runs them itself.
        if all(n in names for n in COV_SUITES) and "coverage" in names:
            cov_suite = next(s for s in chosen if s.name == "coverage")
            cov_suite.steps = [("cmd", [PY, "scripts/coverage.py", "--no-run"])]
        if any(n in names for n in COV_SUITES):
            for f in glob.glob(os.path.join(main_build, "**", "*.gcda"), recursive=True):
                os.remove(f)
    by_name = {s.name: s for s in chosen}

    # The plan: lanes of stages where their suites are chosen, others alone.
    plan = []
    staged = set()
    serial = "--serial" in args
    for s in chosen:
        if s.name in staged:
            continue
        stage = None if serial else next((st for st in STAGES
                                          if s.name in st[0] or s.name in st[1]), None)
        if stage is None:
            plan.append(([s], []))
            staged.add(s.name)
            continue
        lanes = tuple([by_name[n] for n in lane if n in by_name] for lane in stage)
        staged.update(x.name for lane in lanes for x in lane)
        plan.append(lanes if lanes[0] else (lanes[1], []))

    pg_dir = tempfile.mkdtemp(prefix="chatd-pg-")
    pg_url = None
    total = [0, 0, 0]
    lock = threading.Lock()
    run_start = time.monotonic()

    def lane_worker(lane):
        for s in lane:
            counts, out, secs = run_suite(s, log_suffix, pg_url)
            with lock:
                for i in range(3):
                    total[i] += counts[i]
                for line in out:
                    print(line, flush=True)
                print(f"suite {s.name}: {summary(*counts)} ({secs:.0f} s)", flush=True)

    try:
        p = subprocess.run(["scripts/pg.sh", "start", pg_dir, str(free_port())],
                           capture_output=True, text=True, timeout=120)
        if p.returncode == 0:
            pg_url = p.stdout.strip().splitlines()[-1]
        else:
            print(f"    private PostgreSQL did not start: {p.stderr.strip()}", flush=True)
        for lanes in plan:
            threads = [threading.Thread(target=lane_worker, args=(lane,))
                       for lane in lanes if lane]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        subprocess.run(["scripts/pg.sh", "stop", pg_dir], capture_output=True, timeout=60)
        shutil.rmtree(pg_dir, ignore_errors=True)
    if len(chosen) > 1:
        print(f"all suites: {time.monotonic() - run_start:.0f} s", flush=True)
    print(summary(*total), flush=True)
    return 1 if total[1] else 0


if __name__ == "__main__":
    sys.exit(main())
