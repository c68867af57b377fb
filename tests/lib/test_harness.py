#!/usr/bin/python3
"""The runner of tests/lib/harness.py itself: what it promises every suite.

    /usr/bin/python3 tests/lib/test_harness.py [TEST...]

Each test writes a small suite, runs it as a suite is run (its own
process), and checks its output and exit status: a test past its timeout
is reported "timed out" and its processes (a child, a grandchild) are gone
before the next test starts, its on_kill() commands ran; a failure, a skip,
a crash and an unknown test name are counted as such; a fixture's check is
a test line.
"""

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import PY, check, pid_alive, run, test  # noqa: E402

LIB = os.path.dirname(os.path.abspath(__file__))


def run_suite(body, *names, timeout=60):
    """Runs BODY (the tests of a suite) with the harness; returns (exit
    status, stdout lines, work dir)."""
    work = tempfile.mkdtemp(prefix="harness-selftest-")
    path = os.path.join(work, "suite.py")
    with open(path, "w") as f:
        f.write(f"import os, signal, subprocess, sys, time\n"
                f"sys.path.insert(0, {LIB!r})\n"
                f"from harness import *\nWORK = {work!r}\n{body}\n")
    p = subprocess.run([PY, path, *names], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout.splitlines(), work


@test(timeout=60)
def timed_out_test_is_stopped_with_its_processes():
    rc, out, work = run_suite('''
@test(timeout=2)
def hangs():
    child = subprocess.Popen(["sleep", "300"])
    grandchild = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!; wait"],
                                  stdout=subprocess.PIPE, text=True)
    with open(os.path.join(WORK, "pids"), "w") as f:
        f.write(f"{child.pid} {grandchild.stdout.readline().strip()}")
    on_kill(["touch", os.path.join(WORK, "on_kill_ran")])
    time.sleep(300)
    open(os.path.join(WORK, "ran_on"), "w").close()

@test
def next_one():
    pass

run()
''')
    check(out[0].startswith("FAIL hangs: timed out after 2 s"), f"output {out}")
    check(out[1].startswith("ok next_one"), f"output {out}")
    check(out[-1] == "1 passed, 1 failed, 0 skipped" and rc == 1, f"rc {rc}, output {out}")
    pids = [int(x) for x in open(os.path.join(work, "pids")).read().split()]
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)   # reaping the orphans is init's, asynchronous
    check(not any(pid_alive(p) for p in pids), f"processes {pids} of the timed-out test live")
    check(os.path.exists(os.path.join(work, "on_kill_ran")), "on_kill() command not run")
    check(not os.path.exists(os.path.join(work, "ran_on")), "the timed-out test ran on")


@test(timeout=60)
def every_outcome_is_counted():
    rc, out, _ = run_suite('''
@test
def passes():
    check(True, "")

@test
def fails():
    check(False, "the reason")

@test
def skips():
    raise Skip("the why")

@test
def dies():
    os.kill(os.getpid(), signal.SIGKILL)

@test
def exits():
    os._exit(0)

run()
''', "passes", "fails", "skips", "dies", "exits", "no_such_test")
    text = "\n".join(out)
    for want in ("FAIL no_such_test: no such test", "ok passes", "FAIL fails: Failure: the reason",
                 "skip skips: the why", "FAIL dies: the test process ended without a result "
                 "(killed by signal 9)", "FAIL exits: the test process ended without a result"):
        check(want in text, f"no {want!r} in {out}")
    check(out[-1] == "1 passed, 4 failed, 1 skipped" and rc == 1, f"rc {rc}, output {out}")


@test(timeout=60)
def fixture_check_is_a_test_line():
    rc, out, _ = run_suite('''
class Shared(Fixture):
    check = "shared_stops_clean"
    def start(self):
        self.proc = subprocess.Popen(["sleep", "300"])
    def stop(self):
        self.proc.kill()
        check(self.proc.wait() == 0, "killed, not clean")

SHARED = Shared()

@test
def fixture_process_outlives_tests():
    check(pid_alive(SHARED.proc.pid), "the fixture's process is gone")

run(fixtures=[SHARED])
''')
    check("ok fixture_process_outlives_tests" in out[0], f"output {out}")
    check(out[1].startswith("FAIL shared_stops_clean: killed, not clean"), f"output {out}")
    check(out[-1] == "1 passed, 1 failed, 0 skipped" and rc == 1, f"rc {rc}, output {out}")


if __name__ == "__main__":
    run()
