#!/usr/bin/python3
"""Integration: chatd in chat mode (the default) against a real, private
JSONPlaceholder server (npm `jsonplaceholder`, scripts/jsonplaceholder.sh),
with aiortc 1.4 as an in-process peer for the protocol-level checks and
chat-client for the end-to-end ones. Everything on 127.0.0.1.

    /usr/bin/python3 tests/integration/test_chat.py [TEST...]

CHATD_TEST_PG_URL (set by tests/run.py) is a private PostgreSQL server; the
PostgreSQL restart test starts its own server with scripts/pg.sh instead.
"""

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import (Chatd, Client, Failure, JsonPlaceholder, PrivatePostgres, Skip,  # noqa: E402
                     ahttp, check, free_port, run, start_chatd, test)

import jwt  # noqa: E402  (PyJWT: Debian's python3-jwt)
from chatpeer import Peer, arun, distinct_users, is_msg, joined  # noqa: E402

QUIET = ("--auto-post-max-ms", "600000")   # no auto post during a short test


JP = harness.shared_jsonplaceholder()   # one real JSONPlaceholder for the run


def sqlite_ids(d, sql="select id from messages"):
    con = sqlite3.connect(os.path.join(d.data, "chat.db"))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------
# tests


@test(timeout=60)
def welcome_shape_and_token():
    d = start_chatd("chat_welcome", *QUIET)

    async def body(peers):
        p = Peer(d.url)
        peers.append(p)
        await p.connect()
        w = await p.recv_match(lambda m: not (m.get("type") == "error" and m.get("code") ==
                                              "USER_FETCH_FAILED" and m.get("fatal") is False),
                               what="welcome")  # a random draw may fail by design
        check(w.get("type") == "welcome", f"first message is not welcome: {w}")
        h = await p.recv()
        check(h.get("type") == "history" and isinstance(h.get("messages"), list),
              f"second message is not history: {h}")
        check(isinstance(w.get("session"), str) and w["session"], f"session: {w}")
        check(w.get("room") == "lobby", f"room: {w.get('room')!r}")
        check(isinstance(w.get("token"), str) and w["token"].count(".") == 2, f"token: {w}")
        u = w.get("user")
        check(isinstance(u, dict), f"user: {u!r}")
        for k in ("id", "name", "username", "email"):
            check(k in u, f"user object lacks {k}: {u}")
        check(u == JP.get(f"/users/{u['id']}"), f"user is not the JSONPlaceholder user: {u}")
        online = w.get("online")
        check(isinstance(online, list) and any(o.get("id") == u["id"] for o in online),
              f"online list lacks self: {online}")
        for o in online:
            check({"id", "name", "username"} <= set(o), f"online USER shape: {o}")
        # token verifies against the JWKS
        status, _, jwks_body = await ahttp("GET", d.url + ".well-known/jwks.json")
        check(status == 200, f"jwks answered {status}")
        jwks = json.loads(jwks_body)
        kid = jwt.get_unverified_header(w["token"]).get("kid")
        keys = [k for k in jwks.get("keys", []) if k.get("kid") == kid]
        check(keys, f"kid {kid!r} not in JWKS {jwks}")
        key = jwt.PyJWK(keys[0])
        claims = jwt.decode(w["token"], key.key, algorithms=["ES256"], audience="chat",
                            issuer=d.url.rstrip("/"))
        check(claims.get("sub") == str(u["id"]), f"sub {claims.get('sub')!r} vs {u['id']}")
        check(claims.get("name") == u["name"], f"name claim {claims.get('name')!r}")
        check(claims.get("preferred_username") == u["username"], f"preferred_username {claims}")
        check(claims.get("email") == u["email"], f"email claim {claims}")
        for k in ("iat", "nbf", "exp", "jti"):
            check(k in claims, f"claim {k} missing: {claims}")
        # a tampered token does not verify (the check above can fail)
        bad = w["token"][:-4] + ("AAAA" if not w["token"].endswith("AAAA") else "BBBB")
        try:
            jwt.decode(bad, key.key, algorithms=["ES256"], audience="chat",
                       issuer=d.url.rstrip("/"))
            raise Failure("PyJWT accepted a tampered token")
        except jwt.InvalidTokenError:
            pass

    arun(body)
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def failed_draw_then_success():
    d = start_chatd("chat_failed_draw", "--seed", "1", *QUIET)

    async def body(peers):
        p = Peer(d.url)
        peers.append(p)
        await p.connect()
        e = await p.recv()
        check(e.get("type") == "error" and e.get("code") == "USER_FETCH_FAILED",
              f"first message is not USER_FETCH_FAILED: {e}")
        check(isinstance(e.get("retry_in_ms"), int) and e["retry_in_ms"] >= 0,
              f"retry_in_ms: {e}")
        check(e.get("fatal") is False, f"fatal should be false: {e}")
        w = await p.recv()
        check(w.get("type") == "welcome", f"after the failed draw: {w}")
        check(w["user"]["id"] == 8, f"second draw with seed 1 gave user {w['user']['id']}, want 8")

    arun(body)
    check(d.term() == 0, "chatd exit status after SIGTERM")
    rows = sqlite_ids(d, "select method, url, status from api_errors")
    shutil.rmtree(d.data, ignore_errors=True)
    check(any(r[2] == 404 and r[1].endswith("/users/11") for r in rows),
          f"api_errors has no 404 row for /users/11: {rows}")


@test(timeout=60)
def fatal_after_last_attempt():
    d = start_chatd("chat_fatal", "--seed", "1", "--draw-attempts", "1", *QUIET)

    async def body(peers):
        p = Peer(d.url)
        peers.append(p)
        await p.connect()
        e = await p.recv()
        check(e.get("type") == "error" and e.get("code") == "USER_FETCH_FAILED",
              f"first message: {e}")
        check(e.get("fatal") is True, f"fatal should be true: {e}")
        try:
            await asyncio.wait_for(p.closed.wait(), 10)
        except asyncio.TimeoutError:
            raise Failure("channel not closed within 10 s of the fatal error")
        check(p.queue.empty(), "messages after the fatal error")

    arun(body)
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=90)
def api_down_then_up():
    api = JsonPlaceholder(free_port())   # started halfway through
    d = Chatd("chat_api_down", "--api-url", f"http://127.0.0.1:{api.port}",
              "--draw-backoff-ms", "100", *QUIET)

    async def body(peers):
        p = Peer(d.url)
        peers.append(p)
        status, headers, b = await p.offer()
        check(status == 503, f"POST /api/rtc with the API down answered {status}: {b[:200]!r}")
        err = json.loads(b).get("error", {})
        check(err.get("code") == "UNAVAILABLE", f"error body {b!r}")
        status, _, b = await ahttp("GET", d.url + "api/health")
        check(status == 503, f"health with the API down answered {status}")
        check(json.loads(b).get("api") == "down", f"health body {b!r}")
        await p.close()
        peers.remove(p)

        await asyncio.get_running_loop().run_in_executor(None, api.start)
        deadline = time.monotonic() + 15
        while True:
            status, _, b = await ahttp("GET", d.url + "api/health")
            if status == 200:
                break
            check(time.monotonic() < deadline, f"health still {status} {b!r} 15 s after API up")
            await asyncio.sleep(0.25)
        check(json.loads(b).get("api") == "ok", f"health body {b!r}")
        q = await joined(peers, d.url)
        check(q.welcome["user"]["id"] >= 1, f"welcome {q.welcome}")

    try:
        arun(body)
    finally:
        api.stop()
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def auto_posts_are_real_posts():
    d = start_chatd("chat_auto", "--auto-post-max-ms", "500")

    async def body(peers):
        p = await joined(peers, d.url)
        autos = []
        deadline = time.monotonic() + 6
        while len(autos) < 3 and time.monotonic() < deadline:
            autos.append(await p.recv_match(lambda m: is_msg(m, "auto"), timeout=5,
                                            what="auto post"))
        check(len(autos) >= 3, f"{len(autos)} auto posts in 6 s")
        for m in autos:
            for k in ("id", "title", "post_id", "text", "ts", "user"):
                check(k in m, f"auto message lacks {k}: {m}")
            check("ref" not in m, f"auto message has a ref: {m}")
            check(m["room"] == "lobby", f"room {m}")
            check(isinstance(m["id"], str), f"id not a string: {m}")
            post = JP.get(f"/posts/{m['post_id']}")
            check(m["text"] == post["body"], f"text != body of post {m['post_id']}: {m}")
            check(m["title"] == post["title"], f"title != title of post {m['post_id']}: {m}")
            check(m["user"]["id"] == p.user["id"] and m["user"]["name"] == p.user["name"],
                  f"auto post in the wrong name: {m['user']} vs {p.user}")

    arun(body)
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def manual_post_reaches_every_peer():
    d = start_chatd("chat_manual", *QUIET)

    async def body(peers):
        a, b = await distinct_users(peers, d.url, 2)
        a.post("  hello from A  ", ref="r-1")
        ma = await a.recv_match(lambda m: is_msg(m, "manual"), what="A's own message")
        mb = await b.recv_match(lambda m: is_msg(m, "manual"), what="A's message at B")
        check(ma.get("ref") == "r-1", f"A's ref not echoed: {ma}")
        check("ref" not in mb, f"B sees A's ref: {mb}")
        for m in (ma, mb):
            check(m["user"]["id"] == a.user["id"] and m["user"]["name"] == a.user["name"]
                  and m["user"]["username"] == a.user["username"], f"wrong user {m['user']}")
            check(m["text"].strip() == "hello from A", f"text {m['text']!r}")
            check("title" not in m and "post_id" not in m, f"manual with auto fields: {m}")
        check(ma["id"] == mb["id"], f"ids differ: {ma['id']} {mb['id']}")

    arun(body)

    # and end to end with chat-client: B prints "NAME: text"
    ca = Client(d.url, "--json")
    ca.wait_connected()
    w = None
    deadline = time.monotonic() + 10
    n = 0
    while w is None and time.monotonic() < deadline:
        lines = ca.wait_lines(n + 1, deadline - time.monotonic())
        for line in lines[n:]:
            obj = json.loads(line)  # --json: every line one JSON object
            if obj.get("type") == "welcome":
                w = obj
                break
            check(obj.get("code") == "USER_FETCH_FAILED", f"chat-client --json printed {line!r}")
        n = len(lines)
    check(w is not None, f"chat-client --json printed no welcome: {ca.lines}")
    cb = Client(d.url)
    cb.wait_connected()
    ca.send("typed line")
    got = cb.wait_lines(1, 10)
    want = f"{w['user']['name']}: typed line"
    deadline = time.monotonic() + 10
    while want not in got and time.monotonic() < deadline:
        got = cb.wait_lines(len(got) + 1, deadline - time.monotonic())
    check(want in got, f"chat-client B printed {got}, want {want!r}")
    check(ca.finish() == 0 and cb.finish() == 0, "chat-client exit status")
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def forged_tokens_refused():
    d = start_chatd("chat_forged", *QUIET)

    async def body(peers):
        a, b = await distinct_users(peers, d.url, 2)
        tok = a.welcome["token"]
        h, p, s = tok.split(".")
        s2 = ("A" if s[5] != "A" else "B")
        forged = ".".join((h, p, s[:5] + s2 + s[6:]))
        a.post("forged", ref="f-1", token=forged)
        e = await a.recv_match(lambda m: m.get("type") in ("error", "message"), what="error")
        check(e.get("type") == "error" and e.get("code") == "INVALID_TOKEN", f"got {e}")
        check(e.get("ref") == "f-1", f"ref not echoed: {e}")
        # a payload edited to another sub, original signature
        import base64
        claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        claims["sub"] = str(b.user["id"])
        p2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        a.post("forged2", ref="f-2", token=".".join((h, p2, s)))
        e = await a.recv_match(lambda m: m.get("type") in ("error", "message"), what="error")
        check(e.get("type") == "error" and e.get("code") == "INVALID_TOKEN"
              and e.get("ref") == "f-2", f"got {e}")
        # A posting with B's valid token
        a.post("with B's token", ref="f-3", token=b.welcome["token"])
        e = await a.recv_match(lambda m: m.get("type") in ("error", "message"), what="error")
        check(e.get("type") == "error" and e.get("code") == "INVALID_TOKEN"
              and e.get("ref") == "f-3", f"got {e}")
        got = [m for m in await b.collect(1.0) if m.get("type") == "message"]
        check(not got, f"B received refused posts: {got}")
        # garbage
        a.send("{not json")
        e = await a.recv_match(lambda m: m.get("type") == "error", what="error")
        check(e.get("code") == "BAD_REQUEST", f"garbage answered {e}")
        a.send({"type": "nonsense", "ref": "x"})
        e = await a.recv_match(lambda m: m.get("type") == "error", what="error")
        check(e.get("code") == "BAD_REQUEST", f"unknown type answered {e}")
        a.send({"type": "ping", "ref": "p-1"})
        pong = await a.recv_match(lambda m: m.get("type") == "pong", what="pong")
        check(pong.get("ref") == "p-1" and pong.get("ts"), f"pong {pong}")
        # and a real post still works
        a.post("real", ref="ok-1")
        m = await a.recv_match(lambda m: is_msg(m, "manual"), what="real post")
        check(m.get("ref") == "ok-1" and m["text"] == "real", f"got {m}")
        # text limits: 1-2000 characters after trimming
        for ref, text, want in (("t-blank", "   ", "BAD_REQUEST"), ("t-2001", "x" * 2001,
                                "BAD_REQUEST"), ("t-2000", "é" * 2000, None)):
            a.post(text, ref=ref)
            m = await a.recv_match(lambda m: m.get("ref") == ref, what=f"answer to {ref}")
            if want:
                check(m.get("type") == "error" and m.get("code") == want, f"{ref}: {m}")
            else:
                check(is_msg(m, "manual", text=text), f"{ref}: {str(m)[:200]}")

    arun(body)
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def resume_with_bearer():
    d = start_chatd("chat_resume", *QUIET)

    async def body(peers):
        a = await joined(peers, d.url)
        b = await joined(peers, d.url, token=a.welcome["token"])
        check(b.user["id"] == a.user["id"], f"resumed user {b.user['id']} != {a.user['id']}")
        check(b.welcome["token"] != a.welcome["token"], "resume gave the same token")
        check(b.welcome["session"] != a.welcome["session"], "resume reused the session id")
        claims = jwt.decode(b.welcome["token"], options={"verify_signature": False})
        check(claims["sub"] == str(a.user["id"]), f"resumed sub {claims['sub']}")
        # a bad bearer
        bad = Peer(d.url, token=a.welcome["token"][:-3] + "xyz")
        peers.append(bad)
        status, _, body_ = await bad.offer()
        check(status == 401, f"bad bearer answered {status}: {body_[:200]!r}")
        check(json.loads(body_)["error"]["code"] == "INVALID_TOKEN", f"body {body_!r}")
        bad2 = Peer(d.url, token="garbage")
        peers.append(bad2)
        status, _, body_ = await bad2.offer()
        check(status == 401, f"garbage bearer answered {status}: {body_[:200]!r}")

    arun(body)
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def history_and_rest():
    d = start_chatd("chat_history", *QUIET)

    async def body(peers):
        a = await joined(peers, d.url)
        a.post("first", ref="h1")
        m1 = await a.recv_match(lambda m: is_msg(m, ref="h1"), what="first")
        await asyncio.sleep(1.1)  # stay under the rate limit's burst anyway
        a.post("second", ref="h2")
        m2 = await a.recv_match(lambda m: is_msg(m, ref="h2"), what="second")
        b = await joined(peers, d.url)
        hist = b.history["messages"]
        ids = [m.get("id") for m in hist]
        check(m1["id"] in ids and m2["id"] in ids, f"history lacks the posts: {hist}")
        check(hist[-1]["id"] == m2["id"], f"newest is not last: {ids}")
        check(ids.index(m1["id"]) < ids.index(m2["id"]), f"history order {ids}")
        check(hist[-1]["text"] == "second" and hist[-1]["user"]["id"] == a.user["id"],
              f"history entry {hist[-1]}")
        check("ref" not in hist[-1], f"history leaks ref: {hist[-1]}")
        status, _, body_ = await ahttp("GET", d.url + "api/rooms/lobby/messages?limit=5")
        check(status == 200, f"REST history answered {status}")
        msgs = json.loads(body_)["messages"]
        check(len(msgs) <= 5, f"limit=5 gave {len(msgs)}")
        check(msgs and msgs[-1]["id"] == m2["id"] and msgs[-1]["text"] == "second",
              f"REST history {msgs}")
        check(any(m["id"] == m1["id"] for m in msgs), f"REST history lacks first {msgs}")
        status, _, body_ = await ahttp(
            "GET", d.url + "api/rooms/lobby/messages?limit=5&before=" + m2["id"])
        check(status == 200, f"before= answered {status}")
        older = json.loads(body_)["messages"]
        check(older and older[-1]["id"] == m1["id"], f"before={m2['id']} gave {older}")

    arun(body)
    check(d.stop() == 0, "chatd exit status after SIGTERM")


async def post_spread(peers_, count, per_peer_gap=0.25, prefix="m"):
    """COUNT posts round-robin from PEERS_; returns delivered ids (from each
    sender's own echo) and the refs that were refused."""
    refs = {}
    for i in range(count):
        p = peers_[i % len(peers_)]
        ref = f"{prefix}-{i}"
        refs[ref] = p
        p.post(f"{prefix} message {i}", ref=ref)
        if (i + 1) % len(peers_) == 0:
            await asyncio.sleep(per_peer_gap)
    delivered, refused, autos = {}, set(), set()
    deadline = time.monotonic() + 15
    pending = set(refs)
    while pending and time.monotonic() < deadline:
        progressed = False
        for p in peers_:
            while not p.queue.empty():
                m = await p.recv(1)
                progressed = True
                if is_msg(m, "auto"):
                    autos.add(m["id"])
                r = m.get("ref")
                if r in pending:
                    pending.discard(r)
                    if m.get("type") == "message":
                        delivered[r] = m["id"]
                    else:
                        refused.add(r)
        if not progressed:
            await asyncio.sleep(0.05)
    check(not pending, f"{len(pending)} posts got neither message nor error: {sorted(pending)[:5]}")
    return delivered, refused, autos


@test(timeout=90)
def sigterm_loses_nothing():
    d = start_chatd("chat_sigterm", "--auto-post-max-ms", "200")
    result = {}

    async def body(peers):
        ps = await distinct_users(peers, d.url, 4)
        delivered, refused, autos = await post_spread(ps, 50, per_peer_gap=0.3)
        for p in ps:  # autos seen by everyone
            for m in await p.collect(0.2):
                if is_msg(m, "auto"):
                    autos.add(m["id"])
        result.update(delivered=delivered, autos=autos)
        check(len(delivered) >= 25, f"only {len(delivered)} of 50 delivered ({len(refused)} refused)")
        check(autos, "no auto post seen")

    arun(body)
    rc = d.term()
    rows = {str(r[0]) for r in sqlite_ids(d)}
    shutil.rmtree(d.data, ignore_errors=True)
    check(rc == 0, f"chatd exit status {rc} after SIGTERM")
    missing = [i for i in result["delivered"].values() if i not in rows]
    check(not missing, f"{len(missing)} delivered manual ids missing from messages: {missing[:5]}")
    missing = [i for i in result["autos"] if i not in rows]
    check(not missing, f"{len(missing)} delivered auto ids missing from messages: {missing[:5]}")


@test(timeout=150)
def postgres_restart_loses_nothing():
    pg = PrivatePostgres()
    url = pg.url
    d = None
    try:
        d = start_chatd("chat_pg_restart", "--database-url", url, "--auto-post-max-ms", "500")
        result = {}

        async def body(peers):
            ps = await distinct_users(peers, d.url, 3)
            delivered, _, autos = await post_spread(ps, 9, 0.4, "before")
            check(len(delivered) >= 6, f"before the outage only {len(delivered)} delivered")
            await asyncio.get_running_loop().run_in_executor(None, pg.stop)
            await asyncio.sleep(2.0)
            for p in ps:  # refill the rate limit buckets
                while not p.queue.empty():
                    m = await p.recv(1)
                    if is_msg(m, "auto"):
                        autos.add(m["id"])
            down_deadline = time.monotonic() + 15
            while True:
                status, _, b = await ahttp("GET", d.url + "api/health")
                if status == 503:
                    break
                check(time.monotonic() < down_deadline,
                      f"health still {status} {b!r} with the database stopped")
                await asyncio.sleep(0.25)
            check(json.loads(b).get("database") == "down", f"health body {b!r}")
            dl2, _, a2 = await post_spread(ps, 9, 0.4, "during")
            check(len(dl2) >= 6, f"during the outage only {len(dl2)} delivered")
            await asyncio.get_running_loop().run_in_executor(None, pg.start)
            up_deadline = time.monotonic() + 20
            while True:
                status, _, b = await ahttp("GET", d.url + "api/health")
                if status == 200:
                    break
                check(time.monotonic() < up_deadline,
                      f"health still {status} {b!r} 20 s after the database came back")
                await asyncio.sleep(0.25)
            dl3, _, a3 = await post_spread(ps, 6, 0.4, "after")
            for p in ps:
                for m in await p.collect(0.2):
                    if is_msg(m, "auto"):
                        autos.add(m["id"])
            result["ids"] = set(delivered.values()) | set(dl2.values()) | set(dl3.values())
            result["autos"] = autos | a2 | a3

        arun(body)
        rc = d.term()
        check(rc == 0, f"chatd exit status {rc} after SIGTERM")
        r = subprocess.run(["psql", url, "-Atc", "select id from messages"], capture_output=True,
                           text=True, timeout=30)
        check(r.returncode == 0, f"psql: {r.stderr}")
        rows = set(r.stdout.split())
        missing = sorted(result["ids"] - rows)
        check(not missing, f"{len(missing)} of {len(result['ids'])} delivered manual ids "
                           f"missing from PostgreSQL: {missing[:5]}")
        missing = sorted(result["autos"] - rows)
        check(not missing, f"{len(missing)} of {len(result['autos'])} delivered auto ids "
                           f"missing from PostgreSQL: {missing[:5]}")
    finally:
        if d is not None:
            d.discard()
        pg.remove()


@test(timeout=60)
def postgres_shared_basic():
    url = os.environ.get("CHATD_TEST_PG_URL")
    if not url:
        raise Skip("CHATD_TEST_PG_URL not set (tests/run.py sets it)")
    d = start_chatd("chat_pg_basic", "--database-url", url, *QUIET)

    ids = {}

    async def run_body(peers):
        a = await joined(peers, d.url)
        a.post("pg hello", ref="pg1")
        m = await a.recv_match(lambda m: is_msg(m, ref="pg1"), what="post")
        ids["id"] = m["id"]

    arun(run_body)
    check(d.term() == 0, "chatd exit status after SIGTERM")
    shutil.rmtree(d.data, ignore_errors=True)
    r = subprocess.run(["psql", url, "-Atc", f"select body from messages where id = {int(ids['id'])}"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.strip() == "pg hello",
          f"message {ids['id']} in PostgreSQL: {r.stdout!r} {r.stderr!r}")


@test(timeout=60)
def rate_limited_burst():
    d = start_chatd("chat_rate", *QUIET)

    async def body(peers):
        a, b = await distinct_users(peers, d.url, 2)
        for i in range(20):
            a.post(f"burst {i}", ref=f"b-{i}")
        answers = {}
        deadline = time.monotonic() + 10
        while len(answers) < 20 and time.monotonic() < deadline:
            m = await a.recv_match(lambda m: str(m.get("ref", "")).startswith("b-"),
                                   timeout=max(0.1, deadline - time.monotonic()),
                                   what="answer to a burst post")
            answers[m["ref"]] = m
        check(len(answers) == 20, f"only {len(answers)} of 20 posts answered")
        limited = [m for m in answers.values() if m.get("type") == "error"]
        ok = [m for m in answers.values() if m.get("type") == "message"]
        check(limited, "20 posts at once: none RATE_LIMITED")
        check(ok, "20 posts at once: none delivered")
        for e in limited:
            check(e.get("code") == "RATE_LIMITED", f"error {e}")
            check(isinstance(e.get("retry_in_ms"), int) and e["retry_in_ms"] > 0,
                  f"retry_in_ms {e}")
        b.post("not limited", ref="b-ok")
        m = await b.recv_match(lambda m: m.get("ref") == "b-ok", what="B's answer")
        check(m.get("type") == "message", f"B's post was refused: {m}")
        m = await a.recv_match(lambda m: is_msg(m, "manual", text="not limited"),
                               what="B's post at A")

    arun(body)
    check(d.stop() == 0, "chatd exit status after SIGTERM")


@test(timeout=60)
def metrics_present():
    d = start_chatd("chat_metrics", *QUIET)

    async def body(peers):
        a = await joined(peers, d.url)
        a.post("count me", ref="c1")
        await a.recv_match(lambda m: is_msg(m, ref="c1"), what="post")
        # chatd counts a message just after sending it (service.c publish_message),
        # so a scrape right after delivery may not show it yet: poll briefly.
        deadline = time.monotonic() + 3
        while True:
            status, _, text = await ahttp("GET", d.url + "metrics")
            check(status == 200, f"/metrics answered {status}")
            text = text.decode()
            names = set()
            values = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    k, _, v = line.rpartition(" ")
                    names.add(k.split("{")[0])
                    values[k] = float(v)
            if values.get('chatd_messages_total{source="manual"}', 0) >= 1 or \
                    time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        for n in ("chatd_peers", "chatd_messages_total", "chatd_api_errors_total",
                  "chatd_db_queue_depth"):
            check(n in names, f"/metrics lacks {n}")
        check(any(n.startswith("chatd_db_write_latency_seconds") for n in names),
              "/metrics lacks chatd_db_write_latency_seconds")
        peers_v = sum(v for k, v in values.items() if k.split("{")[0] == "chatd_peers")
        check(peers_v >= 1, f"chatd_peers {peers_v} with a peer connected")
        msgs_v = sum(v for k, v in values.items() if k.split("{")[0] == "chatd_messages_total")
        check(msgs_v >= 1, f"chatd_messages_total {msgs_v} after a post")

    arun(body)
    check(d.stop() == 0, "chatd exit status after SIGTERM")


if __name__ == "__main__":
    run(fixtures=[harness.shared_jsonplaceholder()])
