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
chat-client runs as a subprocess. Each test prints "ok NAME", "FAIL NAME:
reason" or "skip NAME: reason"; the last line is "N passed, N failed, N
skipped"; the exit status is non-zero when a test failed.
"""

import asyncio
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
os.chdir(ROOT)

try:
    import aioice.ice
    from aiortc import RTCPeerConnection, RTCSessionDescription
except ImportError as exc:  # wrong interpreter (pyenv python3 has no aiortc)
    print(f"FAIL import_aiortc: {exc} (run with /usr/bin/python3)")
    print("0 passed, 1 failed, 0 skipped")
    sys.exit(1)

# aiortc ignores loopback when it gathers host candidates; chatd's ICE is on
# 127.0.0.1 here, so offer exactly that.
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]

CHATD_BIN = os.environ.get("CHATD_BIN", "build/chatd")
CHAT_CLIENT_BIN = os.environ.get("CHAT_CLIENT_BIN", "build/chat-client")
LOG_DIR = os.environ.get("TEST_LOG_DIR", "build/test-logs")
LOG_LEVEL = os.environ.get("CHATD_LOG_LEVEL", "debug")
MAX_MESSAGE = 64 * 1024

logging.basicConfig(level=logging.CRITICAL)  # aiortc/aioice stay quiet


class TestFailure(Exception):
    pass


def check(cond, reason):
    if not cond:
        raise TestFailure(reason)


class Skip(Exception):
    pass


# --------------------------------------------------------------------------
# chatd


class Chatd:
    def __init__(self):
        self.proc = None
        self.url = None
        self.log_path = os.path.join(LOG_DIR, "interop-aiortc-chatd.log")
        self.data_dir = tempfile.mkdtemp(prefix="chatd-interop-")

    def start(self, timeout=15.0):
        os.makedirs(LOG_DIR, exist_ok=True)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [CHATD_BIN, "--mode", "relay", "--listen", "127.0.0.1:0", "--ice-address",
             "127.0.0.1", "--data-dir", self.data_dir, "--log-level", LOG_LEVEL],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        # The first stdout line carries the URL. Read it with a deadline.
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            m = re.search(rb"listening on (http://[^\s]+)", buf)
            if m:
                self.url = m.group(1).decode().rstrip("/")
                sel.close()
                return
        sel.close()
        raise RuntimeError(f"chatd did not print its URL (stdout {buf!r}); see {self.log_path}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return self.proc.returncode


CHATD = Chatd()


def http(method, url, body=None, headers=None, timeout=10.0):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


async def ahttp(*args, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: http(*args, **kw))


# --------------------------------------------------------------------------
# aiortc peer


def set_setup(sdp, role):
    """Rewrite every a=setup line of an SDP to ROLE (active|passive|actpass)."""
    out, n = re.subn(r"(?m)^a=setup:\w+", f"a=setup:{role}", sdp)
    check(n > 0, "aiortc's offer has no a=setup line")
    return out


class AiortcPeer:
    def __init__(self, room, setup=None):
        self.room = room
        self.setup = setup          # munge the offer's a=setup before POSTing
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("chat")
        self.messages = asyncio.Queue()
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self.offer_sdp = self.sent_sdp = self.answer_sdp = None
        self.location = None
        self.channel.on("open", self.opened.set)
        self.channel.on("close", self.closed.set)
        self.channel.on("message", lambda m: self.messages.put_nowait(m))

    async def connect(self, open_timeout=15.0):
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)  # aiortc gathers here (non-trickle)
        self.offer_sdp = self.pc.localDescription.sdp
        self.sent_sdp = set_setup(self.offer_sdp, self.setup) if self.setup else self.offer_sdp
        status, headers, body = await ahttp(
            "POST", f"{CHATD.url}/api/rtc?room={self.room}", self.sent_sdp.encode(),
            {"Content-Type": "application/sdp"})
        check(status == 201, f"POST /api/rtc answered {status}: {body[:300]!r}")
        self.location = headers.get("Location")
        check(self.location and self.location.startswith("/api/rtc/"),
              f"bad Location header {self.location!r}")
        self.answer_sdp = body.decode()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer_sdp, type="answer"))
        try:
            await asyncio.wait_for(self.opened.wait(), open_timeout)
        except asyncio.TimeoutError:
            raise TestFailure(
                f"data channel did not open in {open_timeout}s (ice={self.pc.iceConnectionState}, "
                f"conn={self.pc.connectionState}, channel={self.channel.readyState})")

    def dtls_role(self):
        # aiortc's own DTLS role, as set from the answer's a=setup
        return self.pc.sctp.transport._role if self.pc.sctp else None

    async def recv(self, timeout=10.0, what="message"):
        try:
            return await asyncio.wait_for(self.messages.get(), timeout)
        except asyncio.TimeoutError:
            raise TestFailure(f"aiortc received no {what} within {timeout}s")

    async def close(self):
        try:
            await asyncio.wait_for(self.pc.close(), 5)
        except Exception:
            pass
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
            CHAT_CLIENT_BIN, "--raw", "--url", f"{CHATD.url}/?room={self.room}",
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
            raise TestFailure(f"chat-client not connected within {timeout}s; stderr: {self.stderr_lines}")
        check(ok, f"chat-client exited before connecting (rc={self.proc.returncode}); "
                  f"stderr: {self.stderr_lines}")

    async def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def recv(self, timeout=10.0, what="line"):
        try:
            return await asyncio.wait_for(self.lines.get(), timeout)
        except asyncio.TimeoutError:
            raise TestFailure(f"chat-client printed no {what} within {timeout}s")

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
            raise TestFailure(f"aiortc channel still {aio.channel.readyState} 10s after DELETE")
        status, headers, body = await ahttp("DELETE", CHATD.url + aio.location)
        check(status == 404, f"second DELETE answered {status}, want 404")
        try:
            err = json.loads(body)["error"]
            check(isinstance(err.get("code"), str) and isinstance(err.get("message"), str),
                  f"error body {body[:200]!r}")
        except (ValueError, KeyError, TypeError):
            raise TestFailure(f"404 body is not {{\"error\":{{code,message}}}}: {body[:200]!r}")
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
            raise TestFailure(f"reply is not JSON: {reply[:200]!r}")
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
            raise TestFailure(f"reply is not JSON: {reply[:120]!r}")
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
                raise TestFailure(
                    f"message {i}: got len {len(got)} {got[:24]!r}, want len {len(want)} {want[:24]!r}")
        # nothing extra arrives
        try:
            extra = await asyncio.wait_for(client.lines.get(), 0.5)
            raise TestFailure(f"unexpected extra line {extra[:40]!r}")
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


async def test_chatd_still_running():
    check(CHATD.alive(), f"chatd exited with status {CHATD.proc.returncode}; see {CHATD.log_path}")


TESTS = [
    ("a_relay_both_directions", test_a_relay_both_directions, 45),
    ("b_answer_old_dialect", test_b_answer_old_dialect, 30),
    ("b2_delete_session", test_b2_delete_session, 30),
    ("c_too_large_then_usable", test_c_too_large, 45),
    ("c2_size_boundary_65536_65537", test_c2_size_boundary, 45),
    ("d_200_assorted_in_order", test_d_200_assorted_in_order, 180),
    ("e_dtls_role_offer_active", test_e_dtls_role_offer_active, 45),
    ("e_dtls_role_offer_passive", test_e_dtls_role_offer_passive, 45),
    ("chatd_still_running", test_chatd_still_running, 5),
]


async def main():
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    only = set(sys.argv[1:])
    for name, fn, timeout in TESTS:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(fn(), timeout)
        except Skip as e:
            counts["skipped"] += 1
            print(f"skip {name}: {e}", flush=True)
            continue
        except TestFailure as e:
            counts["failed"] += 1
            print(f"FAIL {name}: {e}", flush=True)
            continue
        except asyncio.TimeoutError:
            counts["failed"] += 1
            print(f"FAIL {name}: timed out after {timeout}s", flush=True)
            continue
        except Exception as e:
            counts["failed"] += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stderr)
            continue
        counts["passed"] += 1
        print(f"ok {name} ({time.monotonic() - t0:.1f}s)", flush=True)
    return counts


def run():
    for b in (CHATD_BIN, CHAT_CLIENT_BIN):
        if not os.access(b, os.X_OK):
            print(f"FAIL setup: {b} is not an executable (build with make)")
            print("0 passed, 1 failed, 0 skipped")
            return 1
    try:
        CHATD.start()
    except Exception as e:
        print(f"FAIL start_chatd: {e}")
        CHATD.stop()
        print("0 passed, 1 failed, 0 skipped")
        return 1
    print(f"# chatd at {CHATD.url}, log {CHATD.log_path}", flush=True)
    try:
        counts = asyncio.run(main())
    finally:
        rc = CHATD.stop()
    if rc == 0:
        counts["passed"] += 1
        print("ok chatd_exit_0_on_sigterm")
    else:
        counts["failed"] += 1
        print(f"FAIL chatd_exit_0_on_sigterm: exit status {rc} after SIGTERM (want 0); see {CHATD.log_path}")
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(run())
