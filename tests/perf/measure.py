#!/usr/bin/python3
"""Transport measurements for the notes and docs/BENCHMARKS.md:

  setup   median/p90 of N chat-client setups (offer POST to channel open)
  relay   messages/s delivered through the relay to P peers
  draws   share of user draws that fail (one in N+1 by design)

    /usr/bin/python3 tests/perf/measure.py [setup N] [relay PEERS MESSAGES] [draws N]
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402


def setup(n):
    d = harness.Chatd("perf-setup", "--mode", "relay")
    times = []
    for _ in range(n):
        c = harness.Client(d.url, "--raw", "--timing")
        c.wait_connected()
        c.finish()
        t = [float(e.split()[2]) for e in c.err_lines if "setup" in e]
        times.append(t[0])
    d.stop()
    times.sort()
    print(f"setup: n={n} median={statistics.median(times):.1f} ms "
          f"p90={times[int(n * 0.9) - 1]:.1f} ms min={times[0]:.1f} ms max={times[-1]:.1f} ms")


def relay(peers, messages):
    d = harness.Chatd("perf-relay", "--mode", "relay")
    cs = [harness.Client(d.url, "--raw", "--quiet") for _ in range(peers)]
    while d.metrics().get("chatd_peers", 0) < peers:
        time.sleep(0.1)
    time.sleep(0.5)
    msgs = [f"m{i:06d} " + "x" * 100 for i in range(messages)]
    start = time.monotonic()
    cs[0].send_many(msgs).join()
    for c in cs[1:]:
        got = c.wait_lines(messages, timeout=300)
        assert len(got) >= messages, f"lost messages: {len(got)}"
    took = time.monotonic() - start
    delivered = messages * (peers - 1)
    print(f"relay: {peers} peers, {messages} messages of ~110 B from one sender, "
          f"{delivered} deliveries in {took:.2f} s = {delivered / took:.0f} msg/s delivered "
          f"({messages / took:.0f} msg/s in)")
    for c in cs:
        c.finish()
    d.stop()


def draws(n):
    """Connects clients until chatd has made n draws; reports the failed share."""
    import threading
    d = harness.start_chatd("perf-draws", "--draw-backoff-ms", "0", "--draw-attempts", "10",
                            "--auto-post-max-ms", "600000")

    def worker():
        while d.metrics().get("chatd_draws_total", 0) < n:
            c = harness.Client(d.url, "--quiet", "--json")
            c.wait_lines(2, timeout=30)  # welcome + history
            c.finish()

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    m = d.metrics()
    total, failed = m["chatd_draws_total"], m["chatd_draws_failed_total"]
    print(f"draws: {total:.0f} draws, {failed:.0f} failed = {100 * failed / total:.2f}% "
          f"(expected 1/11 = 9.09% with the 10-user directory)")
    d.stop()


if __name__ == "__main__":
    args = sys.argv[1:] or ["setup", "100", "relay", "50", "2000"]
    while args:
        if args[0] == "setup":
            setup(int(args[1]))
            args = args[2:]
        elif args[0] == "draws":
            draws(int(args[1]))
            args = args[2:]
        elif args[0] == "relay":
            relay(int(args[1]), int(args[2]))
            args = args[3:]
        else:
            sys.exit(f"unknown: {args[0]}")
    harness.cleanup_processes()
