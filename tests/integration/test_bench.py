#!/usr/bin/python3
"""Integration: chat-bench (the load generator of `make bench`) counts
right, against chatd and against Janus TextRoom, with a few peers. It
asserts counts, never wall-clock figures.

    /usr/bin/python3 tests/integration/test_bench.py [TEST...]

chatd runs in chat mode against a real private JSONPlaceholder on
127.0.0.1. The Janus test runs Janus (Debian's `janus`, scripts/janus.sh)
and chat-bench inside a private network namespace (scripts/netns.sh), as
`make bench` does; it is skipped when Janus is not installed or the
namespace cannot be made (no root).
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import ROOT, Skip, check, free_port, run, start_chatd, test  # noqa: E402

BENCH = os.environ.get("CHAT_BENCH_BIN", os.path.join(ROOT, "build", "chat-bench"))
def results(stdout):
    """chat-bench's result lines as dicts, in order."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("scenario="):
            out.append(dict(p.split("=", 1) for p in line.split() if "=" in p))
    return out


def bench(*args, timeout=120):
    p = subprocess.run([BENCH, *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, results(p.stdout), p.stderr


def chatd(*extra):
    # Connections are refused (503) until the user directory has loaded.
    return start_chatd("bench", "--auto-post-max-ms", "3600000", "--draw-backoff-ms", "0",
                       *extra)


def check_fanout(f, peers):
    sent, refused = int(f["sent"]), int(f["refused"])
    expected = (sent - refused) * (peers - 1)
    check(int(f["expected"]) == expected, f"expected {f['expected']}, want {expected}: {f}")
    check(int(f["delivered"]) == expected and int(f["lost"]) == 0, f"losses: {f}")
    check(int(f["lat_n"]) == expected, f"one latency sample per delivery: {f}")
    check(int(f["stale"]) == 0 and int(f["send_failed"]) == 0, f"{f}")


@test(timeout=120)
def fanout_against_chatd_counts_every_delivery():
    d = chatd("--post-rate", "100")
    try:
        rc, res, err = bench("--url", d.url, "--scenario", "fanout", "--peers", "5",
                             "--rates", "2,5", "--duration", "2", "--ice-address", "127.0.0.1",
                             "--server-pid", str(d.proc.pid))
        check(rc == 0, f"chat-bench exit {rc}: {err[-300:]}")
        check(len(res) == 3, f"want a connect line and two fanout lines: {res}")
        c = res[0]
        check(c["scenario"] == "connect" and c["ready"] == "5" and c["failures"] == "0", f"{c}")
        check(c["ready_n"] == "5" and c["open_n"] == "5", f"one setup sample per peer: {c}")
        for f, rate in zip(res[1:], ("2", "5")):
            check(f["scenario"] == "fanout" and f["rate"] == rate, f"{f}")
            check(int(f["sent"]) >= 5 * int(rate) * 2 - 5, f"too few sent: {f}")
            check(f["refused"] == "0", f"nothing refused at --post-rate 100: {f}")
            check_fanout(f, 5)
            check(float(f["server_rss_kb"]) > 0, f"server RSS read from /proc: {f}")
        check(d.alive(), "chatd died")
    finally:
        d.stop()


@test(timeout=120)
def several_urls_and_server_pids():
    # --url twice (here the same chatd: the nodes of a cluster in
    # make bench-cluster): peer i connects to URL i mod 2, every delivery is
    # counted once and split by the receiver's URL, and every latency sample
    # is either same-URL or cross-URL. --server-pid twice: each one's CPU.
    d = chatd("--post-rate", "100")
    try:
        pid = str(d.proc.pid)
        rc, res, err = bench("--url", d.url, "--url", d.url, "--scenario", "fanout",
                             "--peers", "5", "--rates", "3", "--duration", "2",
                             "--ice-address", "127.0.0.1", "--server-pid", pid,
                             "--server-pid", pid)
        check(rc == 0, f"chat-bench exit {rc}: {err[-300:]}")
        f = res[-1]
        check_fanout(f, 5)
        check(f["urls"] == "2", f"{f}")
        each = [int(x) for x in f["delivered_each"].split(",")]
        check(len(each) == 2 and sum(each) == int(f["delivered"]), f"{f}")
        check(int(f["lat_same_n"]) + int(f["lat_cross_n"]) == int(f["lat_n"]), f"{f}")
        check(int(f["lat_same_n"]) > 0 and int(f["lat_cross_n"]) > 0, f"{f}")
        cpu = [float(x) for x in f["server_cpu_each_s"].split(",")]
        check(len(cpu) == 2 and cpu[0] == cpu[1], f"the same pid twice: {f}")
        check(abs(sum(cpu) - float(f["server_cpu_s"])) < 0.011, f"summed: {f}")
    finally:
        d.stop()


@test(timeout=120)
def refused_posts_are_not_counted_as_lost():
    # Default limit: a burst of 5 and 1 post/s per user; 4 peers posting
    # 10/s for 2 s go well over it, and the refusals must balance the books.
    d = chatd()
    try:
        rc, res, err = bench("--url", d.url, "--scenario", "fanout", "--peers", "4",
                             "--rates", "10", "--duration", "2", "--ice-address", "127.0.0.1")
        check(rc == 0, f"chat-bench exit {rc}: {err[-300:]}")
        f = res[-1]
        check(int(f["refused"]) > 0, f"the rate limit refused nothing: {f}")
        check_fanout(f, 4)
    finally:
        d.stop()


@test(timeout=120)
def transport_flag_and_half_load_run():
    # --transport nice is accepted towards chatd and named in every line;
    # --half adds one run at half the highest delivered rate.
    d = chatd("--post-rate", "100")
    try:
        rc, res, err = bench("--url", d.url, "--scenario", "fanout", "--peers", "4",
                             "--rates", "4", "--duration", "1", "--half", "--transport", "nice",
                             "--ice-address", "127.0.0.1", "--server-pid", str(d.proc.pid))
        check(rc == 0, f"chat-bench exit {rc}: {err[-300:]}")
        check(len(res) == 3, f"want connect, fanout and the half-load run: {res}")
        check(all(r["transport"] == "nice" and int(r["client_cpus"]) >= 1 for r in res), f"{res}")
        full, half = res[1], res[2]
        check("half_of_per_s" not in full and float(half["half_of_per_s"]) ==
              float(full["delivered_per_s"]), f"half of the best run: {half}")
        check(abs(float(half["offered_per_s"]) - float(full["delivered_per_s"]) / 2) < 1, f"{half}")
        for f in (full, half):
            check_fanout(f, 4)
            check(float(f["planned"]) > 0, f"{f}")
    finally:
        d.stop()


@test(timeout=120)
def capacity_steps_and_hold():
    d = chatd()
    try:
        rc, res, err = bench("--url", d.url, "--scenario", "capacity", "--at", "2,4",
                             "--hold", "1", "--budget", "60", "--ice-address", "127.0.0.1",
                             "--server-pid", str(d.proc.pid))
        check(rc == 0, f"chat-bench exit {rc}: {err[-300:]}")
        check([r["scenario"] for r in res] == ["capacity", "capacity", "capacity_max"], f"{res}")
        check([r["peers"] for r in res[:2]] == ["2", "4"] and
              all(r["ready"] == r["peers"] for r in res[:2]), f"{res}")
        check(res[0]["transport"] == "mux", f"mux is the default towards chatd: {res[0]}")
        m = res[2]
        check(m["peers_max"] == "4" and m["still_ready"] == "4" and m["stop"] == "all_steps",
              f"{m}")
    finally:
        d.stop()


@test(timeout=120)
def seed_search_grows_then_bisects():
    # A p99 bound no run can meet: every size fails, so the search tries 4,
    # then shrinks the room to 2 (closing two members) and stops. Each run
    # must still count every delivery once, in a room of the new size.
    d = chatd("--post-rate", "100")
    try:
        rc, res, err = bench("--url", d.url, "--scenario", "seed", "--sizes", "4",
                             "--resolution", "1", "--duration", "1", "--interval-ms", "200",
                             "--p99-ms", "0.001", "--ice-address", "127.0.0.1")
        check(rc == 0, f"chat-bench exit {rc}: {err[-300:]}")
        check([r["scenario"] for r in res] == ["seed", "seed", "seed_result"], f"{res}")
        for r, size in zip(res[:2], (4, 2)):
            check(int(r["peers"]) == size and r["pass"] == "0", f"{r}")
            check_fanout(r, size)
        m = res[2]
        check(m["largest"] == "0" and m["smallest_failed"] == "2" and m["stop"] == "resolved",
              f"{m}")
    finally:
        d.stop()


@test(timeout=60)
def setup_failure_is_reported():
    # Nothing listens on this port: every peer fails, the exit status says so.
    port = free_port()
    rc, res, err = bench("--url", f"http://127.0.0.1:{port}/", "--peers", "2", "--timeout", "5")
    check(rc == 1, f"exit {rc}, want 1")
    check(res and res[0]["ready"] == "0" and res[0]["failures"] == "2", f"{res}")
    check("failed" in err, f"no reason on stderr: {err!r}")


@test(timeout=30)
def bad_flags_exit_2():
    for args in (["--scenario", "nope", "--url", "http://127.0.0.1:1/"], ["--target", "x"],
                 ["--peers", "0", "--url", "http://127.0.0.1:1/"], [],
                 ["--transport", "udp", "--url", "http://127.0.0.1:1/"],
                 ["--target", "janus", "--transport", "mux", "--url", "http://127.0.0.1:1/"],
                 ["--scenario", "capacity", "--at", "10,x", "--url", "http://127.0.0.1:1/"],
                 ["--scenario", "seed", "--sizes", "0", "--url", "http://127.0.0.1:1/"],
                 ["--target", "janus", "--url", "http://127.0.0.1:1/janus",
                  "--url", "http://127.0.0.1:2/janus"],
                 ["--server-pid", "x", "--url", "http://127.0.0.1:1/"]):
        rc, _, _ = bench(*args)
        check(rc == 2, f"{args}: exit {rc}, want 2")
    p = subprocess.run([BENCH, "--help"], capture_output=True, text=True)
    check(p.returncode == 0 and "--target" in p.stdout, "--help")


@test(timeout=180)
def fanout_against_janus_textroom():
    if shutil.which("janus") is None:
        raise Skip("janus is not installed (make deps installs it)")
    if os.geteuid() != 0:
        raise Skip("a network namespace needs root")
    work = tempfile.mkdtemp(prefix="bench-janus-")
    script = os.path.join(work, "run.sh")
    with open(script, "w") as f:
        f.write(f"""#!/bin/sh
set -e
pid=$({ROOT}/scripts/janus.sh start {work}/janus 18099 t0)
rc=0
{BENCH} --target janus --url http://127.0.0.1:18099/janus --scenario fanout --peers 5 \\
    --rates 5 --duration 2 --ice-address 10.77.0.1 --server-pid "$pid" || rc=$?
{ROOT}/scripts/janus.sh stop {work}/janus
exit $rc
""")
    os.chmod(script, 0o755)
    try:
        p = subprocess.run([os.path.join(ROOT, "scripts", "netns.sh"), script],
                           capture_output=True, text=True, timeout=150)
        if p.returncode != 0 and "Operation not permitted" in p.stderr:
            raise Skip("cannot create a network namespace here")
        res = results(p.stdout)
        check(p.returncode == 0 and len(res) == 2,
              f"exit {p.returncode}: {p.stderr[-400:]} {res}")
        c, f = res
        check(c["target"] == "janus" and c["ready"] == "5", f"{c}")
        check(c["transport"] == "nice", f"Janus is full ICE: {c}")
        check_fanout(f, 5)
        check(int(f["sent"]) >= 40, f"{f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run(fixtures=[harness.shared_jsonplaceholder()])
