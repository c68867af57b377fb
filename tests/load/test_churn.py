#!/usr/bin/python3
"""Churn: many connect/disconnect cycles against one chatd (relay mode), then
every resource must be back where it started: no session, peer object or
SCTP association left (/metrics), no extra file descriptor
(/proc/PID/fd) or thread (/proc/PID/task), and no leak at exit (chatd's
exit status under ASan/LeakSanitizer or valgrind).

    /usr/bin/python3 tests/load/test_churn.py [TEST...]

Environment: CHURN_CYCLES (default 2000), CHURN_PARALLEL (default 8),
CHATD_BIN (the ASan build for the churn-asan suite), CHURN_VALGRIND=1 runs
chatd (CHATD_BIN, normally the release build) under
`valgrind --leak-check=full --error-exitcode=1`; its report goes to
TEST_LOG_DIR/churn.valgrind.log.

The clients are real chat-client processes (release build unless
CHAT_CLIENT_BIN says otherwise); each cycle is one process. Most cycles
send one line and close gracefully (end of input); every 10th is ended by
the server (DELETE /api/rtc/ID); every 50th is killed (SIGKILL) right after
its channel opened, a peer that vanishes without closing, which chatd ends
when ICE consent expires. A listener peer in the same room must receive
every line sent by a gracefully closed cycle, exactly once.
"""

import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import CHAT_CLIENT_BIN, LOG_DIR, Chatd, check, http, run, test  # noqa: E402

CYCLES = int(os.environ.get("CHURN_CYCLES", "2000"))
PARALLEL = int(os.environ.get("CHURN_PARALLEL", "8"))
# every KILL_EVERY-th cycle is killed, every DELETE_EVERY-th ended by DELETE
# (0 = never)
KILL_EVERY = int(os.environ.get("CHURN_KILL_EVERY", "50"))
DELETE_EVERY = int(os.environ.get("CHURN_DELETE_EVERY", "10"))
VALGRIND = os.environ.get("CHURN_VALGRIND") == "1"
VALGRIND_LOG = os.path.join(LOG_DIR, "churn.valgrind.log")
RELAY = ("--mode", "relay")


def start_chatd(name):
    """chatd in relay mode; under valgrind when CHURN_VALGRIND=1. The harness
    starts `CHATD_BIN --listen ... ARGS`; valgrind wants its own options
    first, so a wrapper script (which execs valgrind, keeping the PID that
    /proc is read from) puts them there."""
    if not VALGRIND:
        return Chatd(name, *RELAY)
    real = harness.CHATD_BIN
    harness.CHATD_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                     "valgrind-chatd.sh")
    try:
        return Chatd(name, *RELAY, env={"CHATD_REAL_BIN": real, "VALGRIND_LOG": VALGRIND_LOG})
    finally:
        harness.CHATD_BIN = real


def one_graceful(url, k):
    p = subprocess.run([CHAT_CLIENT_BIN, "--url", url, "--raw", "--quiet", "--timeout", "60"],
                       input=f"cycle {k}\n".encode(), capture_output=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"cycle {k}: exit {p.returncode}: {p.stderr.decode()[-300:]}")


def one_deleted(url, k):
    c = harness.Client(url, "--raw", "--timeout", "60")
    c.wait_connected(timeout=90)
    sid = [e for e in c.err_lines if "session" in e][0].split("session ")[1].rstrip(")")
    s, _, _ = http("DELETE", url + "api/rtc/" + sid, timeout=60)
    if s != 204:
        raise RuntimeError(f"cycle {k}: DELETE answered {s}")
    rc = c.proc.wait(60)
    if rc != 1:
        raise RuntimeError(f"cycle {k}: a client ended by the server exits 1, not {rc}")


def one_killed(url, k):
    c = harness.Client(url, "--raw", "--timeout", "60")
    c.wait_connected(timeout=90)
    c.proc.kill()
    c.proc.wait(10)


def fd_names(d):
    """Each of chatd's descriptors as 'N->target'; a socket's target also
    names its protocol and addresses (from /proc/PID/net/*)."""
    pid = d.proc.pid
    sockets = {}
    for proto in ("tcp", "udp", "tcp6", "udp6", "unix"):
        try:
            with open(f"/proc/{pid}/net/{proto}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if proto == "unix":
                if len(cols) >= 7:
                    sockets[cols[6]] = f"unix {cols[7] if len(cols) > 7 else ''}"
            elif len(cols) >= 10:
                lport = int(cols[1].split(":")[1], 16)
                rport = int(cols[2].split(":")[1], 16)
                sockets[cols[9]] = f"{proto} :{lport}->:{rport} state {cols[3]}"
    out = []
    for f in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{f}")
        except OSError:
            continue
        if target.startswith("socket:["):
            target += " " + sockets.get(target[8:-1], "?")
        out.append(f"{f}->{target}")
    return out


def cycle_kind(k):
    if KILL_EVERY and k % KILL_EVERY == KILL_EVERY - 1:
        return "killed"
    if DELETE_EVERY and k % DELETE_EVERY == DELETE_EVERY - 1:
        return "deleted"
    return "graceful"


def settle(d, want_peers, base_fds, timeout):
    """Waits until chatd is back to want_peers and at most base_fds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = d.metrics()
        if m.get("chatd_peers") == want_peers and m.get("chatd_peer_objects") == want_peers \
                and m.get("chatd_sctp_associations") == want_peers and d.fd_count() <= base_fds:
            return m
        time.sleep(0.1)
    return d.metrics()


@test(timeout=1800)
def churn_cycles_return_to_baseline():
    d = start_chatd("churn-valgrind" if VALGRIND else "churn")
    url = d.url
    # a warm-up cycle: libraries open their lazy descriptors and threads once
    one_graceful(url, -1)
    m = settle(d, 0, 10 ** 6, 60)
    check(m.get("chatd_peers") == 0, f"warm-up left a session: {m}")
    base_fds, base_threads = d.fd_count(), d.thread_count()

    listener = harness.Client(url, "--raw", "--quiet", "--timeout", "60")
    deadline = time.time() + 90
    while time.time() < deadline and d.metrics().get("chatd_peers", 0) < 1:
        time.sleep(0.2)
    check(d.metrics().get("chatd_peers") == 1, "listener connected")

    next_cycle = [0]
    errors = []
    kinds = {"graceful": 0, "deleted": 0, "killed": 0}
    lock = threading.Lock()
    start = time.monotonic()

    def worker():
        while True:
            with lock:
                if next_cycle[0] >= CYCLES or errors:
                    return
                k = next_cycle[0]
                next_cycle[0] += 1
            kind = cycle_kind(k)
            try:
                {"graceful": one_graceful, "deleted": one_deleted, "killed": one_killed}[kind](url, k)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                return
            with lock:
                kinds[kind] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    check(not errors, f"after {sum(kinds.values())} cycles: {errors[0] if errors else ''}")
    print(f"    {CYCLES} cycles ({kinds}) in {took:.0f} s, {PARALLEL} at a time", flush=True)

    graceful = {f"cycle {k}" for k in range(CYCLES) if cycle_kind(k) == "graceful"}
    want = len(graceful)
    got = listener.wait_lines(want, timeout=60)
    check(len(got) == want and set(got) == graceful,
          f"listener got {len(got)} lines ({len(set(got))} distinct) of {want}; "
          f"missing e.g. {sorted(graceful - set(got))[:3]}")
    check(listener.finish() == 0, f"listener exits 0: {listener.err_lines}")

    # killed peers end when ICE consent expires (about 30 s without checks)
    m = settle(d, 0, base_fds, 120)
    fds, tasks = d.fd_count(), d.thread_count()
    print(f"    after: peers {m.get('chatd_peers'):.0f}, peer objects "
          f"{m.get('chatd_peer_objects'):.0f}, SCTP associations "
          f"{m.get('chatd_sctp_associations'):.0f}, descriptors {fds} (baseline {base_fds}), "
          f"threads {tasks} (baseline {base_threads})", flush=True)
    check(m.get("chatd_peers") == 0, f"sessions left: {m}")
    check(m.get("chatd_peer_objects") == 0, f"peer objects left: {m}")
    check(m.get("chatd_sctp_associations") == 0, f"SCTP associations left: {m}")
    check(fds <= base_fds, f"descriptors {fds} > baseline {base_fds}: "
          f"{sorted(os.readlink(f'/proc/{d.proc.pid}/fd/{f}') for f in os.listdir(f'/proc/{d.proc.pid}/fd'))}")
    check(tasks <= base_threads, f"threads {tasks} > baseline {base_threads}")
    check(d.alive(), "chatd still running")
    rc = d.stop(timeout=300 if VALGRIND else 60)
    if VALGRIND:
        with open(VALGRIND_LOG) as f:
            report = f.read()
        summary = re.findall(r"(definitely lost|indirectly lost|possibly lost|suppressed):"
                             r" ([\d,]+ bytes)|(ERROR SUMMARY): ([\d,]+ errors)", report)
        summary = [(a or c, b or d) for a, b, c, d in summary]
        print(f"    valgrind: {dict(summary)}", flush=True)
        check(rc == 0, f"chatd under valgrind exit status {rc} (1 = errors or leaks; see "
              f"{VALGRIND_LOG})")
        check(re.search(r"definitely lost: 0 bytes|All heap blocks were freed", report),
              f"valgrind: a definite leak (see {VALGRIND_LOG})")
        check(re.search(r"indirectly lost: 0 bytes|All heap blocks were freed", report),
              f"valgrind: an indirect leak (see {VALGRIND_LOG})")
        check(re.search(r"possibly lost: 0 bytes|All heap blocks were freed", report),
              f"valgrind: a possible leak (see {VALGRIND_LOG})")
        check("ERROR SUMMARY: 0 errors" in report, f"valgrind: errors reported (see {VALGRIND_LOG})")
    else:
        log = open(d.log_path).read()
        check("LeakSanitizer" not in log and "AddressSanitizer" not in log,
              f"sanitizer report in {d.log_path}")
        check(rc == 0, f"chatd exit status {rc} after SIGTERM (under ASan: a leak at exit)")


@test(timeout=300)
def graceful_close_is_clean_under_cross_traffic():
    """Regression: a client that closes gracefully (stream reset, then SCTP
    SHUTDOWN) while chatd is closing its side of the peer got an ABORT and
    reported "SCTP association lost" (exit 1) though everything it sent had
    arrived. Cycles run 8 at a time while another peer floods the room, so
    chatd is busy sending to each closing peer."""
    d = Chatd("graceful_cross", *RELAY)
    flooder = harness.Client(d.url, "--raw", "--quiet")
    stop = threading.Event()

    def flood():
        i = 0
        while not stop.is_set():
            try:
                flooder.send(f"flood {i} " + "x" * 500)
            except (BrokenPipeError, ValueError):
                return
            i += 1
            if i % 50 == 0:
                time.sleep(0.01)

    ft = threading.Thread(target=flood, daemon=True)
    ft.start()
    cycles = int(os.environ.get("GRACEFUL_CYCLES", "600"))
    failures = []
    next_cycle = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if next_cycle[0] >= cycles:
                    return
                k = next_cycle[0]
                next_cycle[0] += 1
            p = subprocess.run([CHAT_CLIENT_BIN, "--url", d.url, "--raw", "--quiet",
                                "--timeout", "60"], input=f"cycle {k}\n".encode(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
            if p.returncode != 0:
                with lock:
                    failures.append(p.stderr.decode().strip()[-200:])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    ft.join(5)
    check(not failures, f"{len(failures)} of {cycles} graceful closes failed, e.g. {failures[0]}"
          if failures else "")
    flooder.finish(timeout=60)
    check(d.stop() == 0, "chatd exits 0")


@test(timeout=900)
def chat_churn_returns_to_baseline():
    """The same in chat mode (the product: draw, user fetch from the real
    JSONPlaceholder, token, room, store): CHURN_CHAT_CYCLES (default 300)
    chat-client sessions, 8 at a time; a third post a line once welcomed, a
    third close right after the channel opens (mid-draw, so the user fetch
    and the store callback arrive after the session closed), a third are
    ended by DELETE once welcomed. Afterwards nothing is left (sessions, peer
    objects, associations, queued log rows, descriptors, threads), every
    logged session has ended, and chatd exits 0 (no leak under ASan)."""
    import sqlite3
    cycles = int(os.environ.get("CHURN_CHAT_CYCLES", "300"))
    api = harness.jsonplaceholder()
    jp_port = harness.url_port(api)
    d = harness.start_chatd("churn_chat", "--auto-post-max-ms", "600000")
    url = d.url

    def welcomed(k, *args):
        c = harness.Client(url, "--timeout", "60", *args)
        with c.cond:
            c.cond.wait_for(lambda: any(" you are " in e for e in c.err_lines)
                            or c.proc.poll() is not None, 60)
        if not any(" you are " in e for e in c.err_lines):
            raise RuntimeError(f"cycle {k}: no welcome: {c.err_lines[-3:]}")
        return c

    def posted(k):
        c = welcomed(k)
        c.send(f"churn {k}")
        rc = c.finish(timeout=60)
        if rc != 0:
            raise RuntimeError(f"cycle {k}: exit {rc}: {c.err_lines[-3:]}")

    def early(k):
        p = subprocess.run([CHAT_CLIENT_BIN, "--url", url, "--quiet", "--timeout", "60"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"cycle {k}: exit {p.returncode}: {p.stderr.decode()[-300:]}")

    def deleted(k):
        c = welcomed(k, "--no-reconnect")   # ended for good: it exits
        sid = [e for e in c.err_lines if "session" in e][0].split("session ")[1].rstrip(")")
        s, _, _ = http("DELETE", url + "api/rtc/" + sid, timeout=60)
        if s != 204:
            raise RuntimeError(f"cycle {k}: DELETE answered {s}")
        c.proc.wait(60)

    def one(k):
        return (posted, early, deleted)[k % 3](k)

    # a warm-up session of each kind, then the baseline
    for k in range(3):
        one(k)
    m = settle(d, 0, 10 ** 6, 60)
    check(m.get("chatd_peers") == 0, f"warm-up left a session: {m}")
    base_fd_names = [f for f in fd_names(d) if f"->:{jp_port} " not in f]
    base_fds, base_threads = len(base_fd_names), d.thread_count()
    errors = []
    next_cycle = [3]
    lock = threading.Lock()
    start = time.monotonic()

    def worker():
        while True:
            with lock:
                if next_cycle[0] >= cycles + 3 or errors:
                    return
                k = next_cycle[0]
                next_cycle[0] += 1
            try:
                one(k)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, f"{errors[0] if errors else ''}")
    took = time.monotonic() - start
    # libcurl keeps idle connections to the API in its pool (up to 4 per
    # transfer run at once) until its next request prunes the ones the
    # server closed: counted apart, and only bounded.
    api_tag = f"->:{jp_port} "

    def own_fds():
        return [f for f in fd_names(d) if api_tag not in f]

    deadline = time.time() + 60
    while time.time() < deadline:
        m = d.metrics()
        if m.get("chatd_peers") == 0 and m.get("chatd_peer_objects") == 0 and \
                m.get("chatd_sctp_associations") == 0 and \
                m.get("chatd_db_queue_depth") == 0 and len(own_fds()) <= base_fds:
            break
        time.sleep(0.5)
    m = d.metrics()
    fds, tasks = len(own_fds()), d.thread_count()
    api_conns = [f for f in fd_names(d) if api_tag in f]
    print(f"    {cycles} chat sessions in {took:.0f} s; after: peers {m.get('chatd_peers'):.0f}"
          f", peer objects {m.get('chatd_peer_objects'):.0f}, SCTP associations "
          f"{m.get('chatd_sctp_associations'):.0f}, log queue {m.get('chatd_db_queue_depth'):.0f}"
          f", draws {m.get('chatd_draws_total'):.0f}, descriptors {fds} (baseline {base_fds})"
          f" and {len(api_conns)} pooled API connections, threads {tasks} (baseline "
          f"{base_threads})", flush=True)
    check(m.get("chatd_peers") == 0, f"sessions left: {m}")
    check(m.get("chatd_peer_objects") == 0, f"peer objects left: {m}")
    check(m.get("chatd_sctp_associations") == 0, f"SCTP associations left: {m}")
    check(m.get("chatd_db_queue_depth") == 0, f"log rows still queued: {m}")
    check(fds <= base_fds, f"descriptors {fds} > baseline {base_fds}: "
          f"new {sorted(set(own_fds()) - set(base_fd_names))}")
    check(len(api_conns) <= 4 * PARALLEL, f"API connections pile up: {api_conns}")
    check(tasks <= base_threads, f"threads {tasks} > baseline {base_threads}")
    data = d.data
    rc = d.term(timeout=60)   # keeps the data dir
    log = open(d.log_path).read()
    check("Sanitizer" not in log, f"sanitizer report in {d.log_path}")
    check(rc == 0, f"chatd exit status {rc} after SIGTERM (under ASan: a leak at exit)")
    con = sqlite3.connect(os.path.join(data, "chat.db"))
    total, open_rows = con.execute(
        "SELECT COUNT(*), SUM(ended_at IS NULL) FROM sessions").fetchone()
    con.close()
    shutil.rmtree(data, ignore_errors=True)
    print(f"    sessions logged {total}, not ended {open_rows or 0}", flush=True)
    check(total and not open_rows, f"{open_rows} of {total} logged sessions never ended")


if __name__ == "__main__":
    run()
