#!/usr/bin/python3
"""Measures two attacks of issue 9 against one chatd (CHATD_BIN, default
build/chatd), for the before/after figures of the issue's closing note:

  half-open   N offers (default 3000) from 127.0.0.1, one copy of an offer
              whose candidate leads nowhere: the answers by status, chatd's
              descriptors before and after, and whether 127.0.0.2 still gets
              its offer answered and /api/health.
  bad-rooms   N requests (default 20000) POST /api/rtc?room=rI with body
              "x": the answers by status and chatd's RSS growth.

    CHATD_BIN=/path/to/chatd tests/abuse/measure_admission.py [half-open|bad-rooms] [N]

Not a test (no pass/fail): tests/abuse/test_abuse.py checks the bounds.
The offer rate is left at chatd's default here (the harness lifts it for
other tests), since it is part of what is measured; MEASURE_OFFER_RATE and
MEASURE_MAX_PENDING change it and --max-pending, to see the next limit (run
under `ulimit -n 1024` to see the descriptor reserve).
"""

import collections
import http.client
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402

OFFER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus", "sdp",
                     "browser_offer.sdp")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def post(port, path, body, source):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        c.request("POST", path, body=body, headers={"Content-Type": "application/sdp"})
        r = c.getresponse()
        r.read()
        return r.status
    except OSError as e:
        return type(e).__name__
    finally:
        c.close()


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "half-open"
    jp = harness.JsonPlaceholder()
    jp.start()
    env = {"CHATD_OFFER_RATE": os.environ.get("MEASURE_OFFER_RATE", "5"),
           "CHATD_MAX_PENDING": os.environ.get("MEASURE_MAX_PENDING", "512")}
    d = harness.start_chatd("measure-" + what, api=jp.url, env=env)
    port = harness.url_port(d.url)
    pid = d.proc.pid
    try:
        if what == "half-open":
            n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
            with open(OFFER, "rb") as f:
                offer = f.read()
            fds0 = d.fd_count()
            t0 = time.time()
            st = collections.Counter(post(port, "/api/rtc", offer, "127.0.0.1") for _ in range(n))
            secs = time.time() - t0
            fds1 = d.fd_count()
            other = post(port, "/api/rtc", offer, "127.0.0.2")
            try:
                hc = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                                source_address=("127.0.0.2", 0))
                hc.request("GET", "/api/health")
                health = hc.getresponse().status
            except OSError as e:
                health = type(e).__name__
            print(f"half-open: {n} offers from 127.0.0.1 in {secs:.1f} s: {dict(st)}; "
                  f"descriptors {fds0} -> {fds1}; from 127.0.0.2: offer {other}, "
                  f"health {health}")
        else:
            n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
            for i in range(200):  # warm up allocator and SQLite caches
                post(port, f"/api/rtc?room=w{i}", b"x", "127.0.0.3")
            rss0 = rss_kib(pid)
            t0 = time.time()
            st = collections.Counter()
            for i in range(n):
                # one address per 10 requests: the rate limit is not what is measured here
                src = f"127.{1 + (i // 2540000) % 200}.{(i // 2540) % 254 + 1}.{(i // 10) % 254 + 1}"
                st[post(port, f"/api/rtc?room=r{i}", b"x", src)] += 1
            secs = time.time() - t0
            rss1 = rss_kib(pid)
            print(f"bad-rooms: {n} bad offers to new rooms in {secs:.1f} s: {dict(st)}; "
                  f"RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB "
                  f"(+{(rss1 - rss0) / 1024:.1f} MiB)")
    finally:
        d.stop()
        jp.stop()


if __name__ == "__main__":
    main()
