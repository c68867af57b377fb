"""chatpeer: the aiortc peer the chat suites share (tests/integration,
tests/interop): connect with an optional bearer token, read welcome and
history, wait for a message of a type or matching a predicate, post.

    from chatpeer import Peer, arun, joined, distinct_users, is_msg, api, aapi
"""

import asyncio
import json
import time

from harness import Failure, check, http
from rtcpeer import DataChannelPeer


class Peer(DataChannelPeer):
    """QUERY is added to /api/rtc ("?room=x&since=5"); HEADERS are sent with
    the offer (X-Room-Pin); SSL_CONTEXT verifies an https URL."""

    def __init__(self, url, token=None, query="", headers=None, ssl_context=None):
        super().__init__(url, query=query, token=token, headers=headers,
                         ssl_context=ssl_context)
        self.welcome = None
        self.history = None

    async def join(self, timeout=15):
        """connect, then read welcome and history (skipping nothing else)."""
        await self.connect()
        self.welcome = await self.recv_type("welcome", timeout=timeout)
        self.history = await self.recv_type("history")
        return self

    @property
    def user(self):
        return self.welcome["user"]

    async def recv(self, timeout=10):
        try:
            raw = await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Failure(f"no message within {timeout} s")
        check(isinstance(raw, str), f"binary message {raw!r}")
        return json.loads(raw)

    async def recv_match(self, pred, timeout=10, what="message"):
        """Next message matching PRED, skipping others (presence, auto...)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"no {what} within {timeout} s")
            try:
                m = await self.recv(left)
            except Failure:
                raise Failure(f"no {what} within {timeout} s")
            if pred(m):
                return m

    async def recv_type(self, typ, timeout=10):
        return await self.recv_match(lambda m: m.get("type") == typ, timeout, f"{typ!r}")

    async def collect(self, seconds):
        out = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                out.append(await self.recv(max(0.01, deadline - time.monotonic())))
            except Failure:
                break
        return out

    def send(self, obj):
        self.channel.send(obj if isinstance(obj, str) else json.dumps(obj))

    def post(self, text, ref=None, token=None):
        m = {"type": "post", "token": token or self.welcome["token"], "text": text}
        if ref is not None:
            m["ref"] = ref
        self.send(m)


def arun(coro_fn):
    """Runs an async test body in a fresh loop; peers it opens get closed."""
    peers = []

    async def wrapper():
        try:
            await coro_fn(peers)
        finally:
            for p in peers:
                await p.close()
    asyncio.run(wrapper())


async def joined(peers, url, token=None):
    p = Peer(url, token)
    peers.append(p)
    return await p.join()


async def distinct_users(peers, url, n, tries=20):
    """N joined peers with N different users (draws may repeat a user)."""
    got = []
    for _ in range(tries):
        p = await joined(peers, url)
        if all(q.user["id"] != p.user["id"] for q in got):
            got.append(p)
            if len(got) == n:
                return got
    raise Failure(f"could not get {n} distinct users in {tries} connections")


def is_msg(m, source=None, ref=None, text=None):
    return (m.get("type") == "message" and (source is None or m.get("source") == source)
            and (ref is None or m.get("ref") == ref) and (text is None or m.get("text") == text))


def api(server, method, path, body=None, token=None, headers=None):
    """(status, parsed JSON or None, headers) of a JSON request to SERVER
    (anything with a .url: a Chatd, a cluster node)."""
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if token:
        h["Authorization"] = "Bearer " + token
    status, hdrs, raw = http(method, server.url.rstrip("/") + path, data, h)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, hdrs


async def aapi(*args, **kw):
    """api() without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: api(*args, **kw))
