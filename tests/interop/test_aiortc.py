#!/usr/bin/python3
"""Interop: aiortc 1.4 (Debian python3-aiortc) <-> chatd (relay) <-> chat-client.

Run with the system Python, which has aiortc:

    /usr/bin/python3 tests/interop/test_aiortc.py

Environment:
    CHATD_BIN        chatd binary            (default build/chatd)
    CHAT_CLIENT_BIN  chat-client binary      (default build/chat-client)
    CHATD_LOG_LEVEL  chatd --log-level       (default debug)
    TEST_LOG_DIR     where logs go           (default build/test-logs)

Everything is real: chatd is started here on 127.0.0.1 (ICE on loopback),
aiortc is the remote peer (old SDP dialect: DTLS/SCTP 5000 + a=sctpmap), and
chat-client runs as a subprocess. One chatd serves every test (a fixture of
the shared runner, tests/lib/harness.py): the tests check it is still
running at the end, and the last line that it exits 0 on SIGTERM.
"""

import asyncio
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import Chatd, Failure, Fixture, ahttp, check, run, test  # noqa: E402
from rtcpeer import DataChannelPeer  # noqa: E402

os.environ.setdefault("CHATD_LOG_LEVEL", "debug")  # harness.Chatd passes it on
MAX_MESSAGE = 64 * 1024


class SharedChatd(Fixture):
    """One chatd (relay) for every test of the run, started before the
    first: the last line checks it exits 0 on SIGTERM after all of them."""

    check = "chatd_exit_0_on_sigterm"

    def start(self):
        for b in (harness.CHATD_BIN, harness.CHAT_CLIENT_BIN):
            check(os.access(b, os.X_OK), f"{b} is not an executable (build with make)")
        # d_200_assorted_in_order sends about 3 MB at once, which chatd relays
        # to chat-client: under ASan that reader can fall more than the
        # default 1 MiB behind, and chatd then closes it as too slow (its
        # back-pressure rule, which tests/abuse checks). This suite is about
        # sizes and order, so its queue is larger than the burst.
        self.d = Chatd("interop-aiortc", "--mode", "relay", "--peer-queue-bytes", "16777216")
        self.url = self.d.url.rstrip("/")
        print(f"# chatd at {self.url}, log {self.d.log_path}", flush=True)

    def alive(self):
        return self.d.alive()

    def stop(self):
        rc = self.d.stop(timeout=10)
        check(rc == 0, f"exit status {rc} after SIGTERM (want 0); see {self.d.log_path}")


CHATD = SharedChatd()


# --------------------------------------------------------------------------
# aiortc peer


def set_setup(sdp, role):
    """Rewrite every a=setup line of an SDP to ROLE (active|passive|actpass)."""
    out, n = re.subn(r"(?m)^a=setup:\w+", f"a=setup:{role}", sdp)
    check(n > 0, "aiortc's offer has no a=setup line")
    return out


class AiortcPeer(DataChannelPeer):
    """A peer in ROOM of the shared chatd; SETUP rewrites the offer's
    a=setup before it is POSTed."""

    def __init__(self, room, setup=None):
        super().__init__(CHATD.url, f"?room={room}")
        self.room = room
        self.setup = setup
        self.messages = self.queue

    def munge(self, sdp):
        return set_setup(sdp, self.setup) if self.setup else sdp

    def dtls_role(self):
        # aiortc's own DTLS role, as set from the answer's a=setup
        return self.pc.sctp.transport._role if self.pc.sctp else None

    async def recv(self, timeout=10.0, what="message"):
        try:
            return await asyncio.wait_for(self.messages.get(), timeout)
        except asyncio.TimeoutError:
            raise Failure(f"aiortc received no {what} within {timeout}s")

    async def close(self):
        await super().close()
        if self.location:
            try:
                await ahttp("DELETE", CHATD.url + self.location, timeout=5)
            except Exception:
                pass


# --------------------------------------------------------------------------
# chat-client subprocess


class ChatClient:
    def __init__(self, room):
        self.room = room
        self.proc = None
        self.stderr_lines = []
        self.lines = asyncio.Queue()
        self._tasks = []

    async def start(self, timeout=15.0):
        self.proc = await asyncio.create_subprocess_exec(
            harness.CHAT_CLIENT_BIN, "--raw", "--url", f"{CHATD.url}/?room={self.room}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=4 * 1024 * 1024)
        connected = asyncio.get_running_loop().create_future()

        async def read_stderr():
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    break
                text = line.decode(errors="replace").rstrip("\n")
                self.stderr_lines.append(text)
                if "chat-client: connected" in text and not connected.done():
                    connected.set_result(True)
            if not connected.done():
                connected.set_result(False)

        async def read_stdout():
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                self.lines.put_nowait(line.decode(errors="replace").rstrip("\n"))

        self._tasks = [asyncio.ensure_future(read_stderr()), asyncio.ensure_future(read_stdout())]
        try:
            ok = await asyncio.wait_for(connected, timeout)
        except asyncio.TimeoutError:
            raise Failure(f"chat-client not connected within {timeout}s; stderr: {self.stderr_lines}")
        check(ok, f"chat-client exited before connecting (rc={self.proc.returncode}); "
                  f"stderr: {self.stderr_lines}")

    async def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def recv(self, timeout=10.0, what="line"):
        try:
            return await asyncio.wait_for(self.lines.get(), timeout)
        except asyncio.TimeoutError:
            raise Failure(f"chat-client printed no {what} within {timeout}s")

    async def finish(self, timeout=10.0):
        """Close stdin (graceful close) and return the exit status."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            try:
                self.proc.stdin.close()
            except Exception:
                pass
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
                return "timeout"
        for t in self._tasks:
            try:
                await asyncio.wait_for(t, 2)
            except Exception:
                t.cancel()
        return self.proc.returncode


# --------------------------------------------------------------------------
# tests


async def with_pair(room, body, setup=None, finish_rc=True):
    """Run BODY(aio, client) with a chat-client and an aiortc peer in ROOM."""
    client = ChatClient(room)
    aio = AiortcPeer(room, setup=setup)
    try:
        await client.start()
        await aio.connect()
        await body(aio, client)
    finally:
        await aio.close()
        rc = await client.finish()
    if finish_rc:
        check(rc == 0, f"chat-client exit status {rc} after end of input (want 0); "
                       f"stderr: {client.stderr_lines[-5:]}")


async def exchange(aio, client, tag):
    msg = f"hello from aiortc ({tag})"
    aio.channel.send(msg)
    got = await client.recv(what="relayed aiortc message")
    check(got == msg, f"chat-client printed {got!r}, want {msg!r}")
    line = f"hello from chat-client ({tag})"
    await client.send(line)
    got = await aio.recv(what="relayed chat-client line")
    check(got == line, f"aiortc received {got!r}, want {line!r}")


async def test_a_relay_both_directions():
    async def body(aio, client):
        aio.channel.send("hello from aiortc")
        got = await client.recv(what="'hello from aiortc'")
        check(got == "hello from aiortc", f"chat-client printed {got!r}")
        await client.send("hello from chat-client")
        got = await aio.recv(what="'hello from chat-client'")
        check(got == "hello from chat-client", f"aiortc received {got!r}")
        check(aio.channel.label == "chat", f"channel label {aio.channel.label!r}")
    await with_pair("interop_a", body)


async def test_b_answer_old_dialect():
    aio = AiortcPeer("interop_b")
    try:
        await aio.connect()
        offer, answer = aio.offer_sdp, aio.answer_sdp
        check(re.search(r"(?m)^m=application \d+ DTLS/SCTP 5000\r?$", offer),
              "precondition: aiortc did not offer 'DTLS/SCTP 5000'")
        m = re.search(r"(?m)^m=application (\d+) (\S+) (.+?)\r?$", answer)
        check(m, f"answer has no m=application line:\n{answer}")
        check(m.group(2) == "DTLS/SCTP", f"answer proto {m.group(2)!r}, want 'DTLS/SCTP'")
        check(m.group(3).strip() == "5000", f"answer fmt {m.group(3)!r}, want '5000'")
        check(re.search(r"(?m)^a=sctpmap:5000 webrtc-datachannel \d+\r?$", answer),
              f"answer has no 'a=sctpmap:5000 webrtc-datachannel N':\n{answer}")
        check(not re.search(r"(?m)^a=sctp-port:", answer),
              "answer mixes dialects: old-dialect m-line with a=sctp-port")
        setup = re.search(r"(?m)^a=setup:(\w+)", answer)
        check(setup and setup.group(1) in ("active", "passive"),
              f"answer a=setup {setup.group(1) if setup else None!r}, want active|passive")
        for attr in ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:sha-256 ", "a=candidate:"):
            check(attr in answer, f"answer lacks {attr}")
        mmax = re.search(r"(?m)^a=max-message-size:(\d+)", answer)
        check(mmax and int(mmax.group(1)) == MAX_MESSAGE,
              f"answer a=max-message-size {mmax.group(1) if mmax else None}, want {MAX_MESSAGE}")
        print(f"# b: answer to actpass chose a=setup:{setup.group(1)} "
              f"(aiortc DTLS role {aio.dtls_role()})")
    finally:
        await aio.close()


async def test_b2_delete_session():
    aio = AiortcPeer("interop_b2")
    try:
        await aio.connect()
        status, _, body = await ahttp("DELETE", CHATD.url + aio.location)
        check(status == 204, f"DELETE {aio.location} answered {status} {body[:200]!r}, want 204")
        try:
            await asyncio.wait_for(aio.closed.wait(), 10)
        except asyncio.TimeoutError:
            raise Failure(f"aiortc channel still {aio.channel.readyState} 10s after DELETE")
        status, headers, body = await ahttp("DELETE", CHATD.url + aio.location)
        check(status == 404, f"second DELETE answered {status}, want 404")
        try:
            err = json.loads(body)["error"]
            check(isinstance(err.get("code"), str) and isinstance(err.get("message"), str),
                  f"error body {body[:200]!r}")
        except (ValueError, KeyError, TypeError):
            raise Failure(f"404 body is not {{\"error\":{{code,message}}}}: {body[:200]!r}")
        aio.location = None
    finally:
        await aio.close()


async def test_c_too_large():
    async def body(aio, client):
        aio.channel.send("x" * 70000)
        reply = await aio.recv(timeout=15, what="TOO_LARGE error reply")
        try:
            j = json.loads(reply)
        except ValueError:
            raise Failure(f"reply is not JSON: {reply[:200]!r}")
        check(isinstance(j, dict) and j.get("type") == "error" and j.get("code") == "TOO_LARGE",
              f"reply {reply[:200]!r}, want type=error code=TOO_LARGE")
        check(aio.channel.readyState == "open", f"channel {aio.channel.readyState} after TOO_LARGE")
        aio.channel.send("still usable after TOO_LARGE")
        got = await client.recv(what="message sent after the oversized one")
        check(got == "still usable after TOO_LARGE",
              f"chat-client printed {got[:80]!r} (len {len(got)}), want the follow-up message "
              "(was the 70,000-byte message relayed?)")
        await client.send("reply after TOO_LARGE")
        got = await aio.recv(what="chat-client line after TOO_LARGE")
        check(got == "reply after TOO_LARGE", f"aiortc received {got[:80]!r}")
    await with_pair("interop_c", body)


async def test_c2_size_boundary():
    async def body(aio, client):
        exact = "E" * MAX_MESSAGE
        aio.channel.send(exact)
        got = await client.recv(timeout=15, what=f"{MAX_MESSAGE}-byte message")
        check(got == exact, f"chat-client printed {len(got)} bytes, want the {MAX_MESSAGE}-byte message")
        aio.channel.send("O" * (MAX_MESSAGE + 1))
        reply = await aio.recv(timeout=15, what=f"TOO_LARGE for {MAX_MESSAGE + 1} bytes")
        try:
            j = json.loads(reply)
        except ValueError:
            raise Failure(f"reply is not JSON: {reply[:120]!r}")
        check(j.get("type") == "error" and j.get("code") == "TOO_LARGE", f"reply {reply[:120]!r}")
        aio.channel.send("after boundary")
        got = await client.recv(what="message after the 65537-byte one")
        check(got == "after boundary", f"chat-client printed {got[:40]!r} (len {len(got)})")
    await with_pair("interop_c2", body)


def assorted_messages(n=200, seed=1234):
    rnd = random.Random(seed)
    fixed = [1, 2, 61440, 1199, 1200, 1201, 16384, 65535 - 4096, 3, 60000]
    sizes = []
    for i in range(n):
        if i < len(fixed):
            sizes.append(fixed[i])
        elif i % 3 == 0:
            sizes.append(rnd.randint(1, 200))
        elif i % 3 == 1:
            sizes.append(rnd.randint(200, 8192))
        else:
            sizes.append(rnd.randint(8192, 61440))
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    msgs = []
    for i, size in enumerate(sizes):
        head = f"#{i:03d}:{size}:"
        body = (head + "".join(alphabet[(i + k) % len(alphabet)] for k in range(size)))[:size]
        if size <= 2:  # too short for a tag: still distinct enough per position
            body = alphabet[i % len(alphabet)] * size
        msgs.append(body)
    return msgs


async def test_d_200_assorted_in_order():
    msgs = assorted_messages()
    check(max(len(m) for m in msgs) == 61440 and min(len(m) for m in msgs) == 1, "size plan")

    async def body(aio, client):
        for m in msgs:
            aio.channel.send(m)
        for i, want in enumerate(msgs):
            got = await client.recv(timeout=60, what=f"message {i} of {len(msgs)}")
            if got != want:
                raise Failure(
                    f"message {i}: got len {len(got)} {got[:24]!r}, want len {len(want)} {want[:24]!r}")
        # nothing extra arrives
        try:
            extra = await asyncio.wait_for(client.lines.get(), 0.5)
            raise Failure(f"unexpected extra line {extra[:40]!r}")
        except asyncio.TimeoutError:
            pass
    await with_pair("interop_d", body)


async def role_test(setup):
    want_answer = {"active": "passive", "passive": "active"}[setup]
    want_aiortc = {"active": "client", "passive": "server"}[setup]
    state = {}

    async def body(aio, client):
        m = re.search(r"(?m)^a=setup:(\w+)", aio.answer_sdp)
        check(m and m.group(1) == want_answer,
              f"offer a=setup:{setup} answered a=setup:{m.group(1) if m else None}, want {want_answer}")
        check(aio.dtls_role() == want_aiortc,
              f"aiortc DTLS role {aio.dtls_role()!r}, want {want_aiortc!r}")
        await exchange(aio, client, f"setup {setup}")
        state["ok"] = True
    await with_pair(f"interop_e_{setup}", body, setup=setup)


async def test_e_dtls_role_offer_active():
    # aiortc refuses to setLocalDescription an offer whose a=setup is not
    # actpass, so the munged text is what chatd receives while aiortc's local
    # description stays actpass; aiortc then takes its DTLS role from the
    # answer (setRemoteDescription: role = opposite of the answer's a=setup).
    await role_test("active")


async def test_e_dtls_role_offer_passive():
    await role_test("passive")


async def test_f_binary_and_empty_messages():
    # RFC 8831's four payload types from an independent stack: binary (53),
    # empty string (56) and empty binary (57) besides text. The relay
    # forwards text only: the chat-client sees the empty string as an empty
    # line at most, never the binary bytes, and the next text arrives.
    async def body(aio, client):
        aio.channel.send(b"\x01\x02binary")
        aio.channel.send(b"")
        aio.channel.send("")
        aio.channel.send("after the odd ones")
        got = await client.recv(what="the text after binary and empty messages")
        while got == "":
            got = await client.recv(what="the text after an empty one")
        check(got == "after the odd ones", f"chat-client printed {got!r}")
        await exchange(aio, client, "f")
    await with_pair("interop_f", body)


async def test_chatd_still_running():
    check(CHATD.alive(), f"chatd exited; see {CHATD.d.log_path}")


def aio_test(name, coro_fn, timeout):
    """Registers COROUTINE_FN as test NAME, run in a fresh event loop."""
    def body():
        asyncio.run(coro_fn())
    body.__name__ = name
    test(body, timeout=timeout)


for _name, _fn, _timeout in [
    ("a_relay_both_directions", test_a_relay_both_directions, 45),
    ("b_answer_old_dialect", test_b_answer_old_dialect, 30),
    ("b2_delete_session", test_b2_delete_session, 30),
    ("c_too_large_then_usable", test_c_too_large, 45),
    ("c2_size_boundary_65536_65537", test_c2_size_boundary, 45),
    ("d_200_assorted_in_order", test_d_200_assorted_in_order, 180),
    ("e_dtls_role_offer_active", test_e_dtls_role_offer_active, 45),
    ("e_dtls_role_offer_passive", test_e_dtls_role_offer_passive, 45),
    ("f_binary_and_empty_messages", test_f_binary_and_empty_messages, 45),
    ("chatd_still_running", test_chatd_still_running, 5),
]:
    aio_test(_name, _fn, _timeout)


if __name__ == "__main__":
    run(fixtures=[CHATD])
