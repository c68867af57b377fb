"""aiortc (Debian's python3-aiortc 1.4, run with /usr/bin/python3) as an
in-process WebRTC peer of chatd, on 127.0.0.1.

Importing this module imports aiortc, makes aioice offer exactly 127.0.0.1
(aiortc ignores loopback when it gathers host candidates, and chatd's ICE is
on 127.0.0.1 in the tests) and quiets aiortc's logging. Under another
interpreter (no aiortc) it prints the suite's failure lines and exits 1.

DataChannelPeer is one RTCPeerConnection with one data channel "chat": it
POSTs its offer to chatd's /api/rtc and queues what the channel receives.
"""

import asyncio
import logging
import sys

from harness import Failure, ahttp, check, summary

try:
    import aioice.ice
    from aiortc import RTCPeerConnection, RTCSessionDescription
except ImportError as exc:  # wrong interpreter (pyenv python3 has no aiortc)
    print(f"FAIL import_aiortc: {exc} (run with /usr/bin/python3)")
    print(summary(0, 1, 0))
    sys.exit(1)

aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
logging.basicConfig(level=logging.CRITICAL)  # aiortc/aioice stay quiet

__all__ = ["RTCPeerConnection", "RTCSessionDescription", "DataChannelPeer"]


class DataChannelPeer:
    """BASE is chatd's URL without the trailing slash; QUERY is added to
    /api/rtc (e.g. "?room=x"); TOKEN, when set, is sent as a bearer; HEADERS
    go with the offer too (e.g. X-Room-Pin); SSL_CONTEXT verifies an https
    BASE (e.g. a front door with a self-signed certificate)."""

    def __init__(self, base, query="", token=None, headers=None, ssl_context=None):
        self.base = base.rstrip("/")
        self.ssl_context = ssl_context
        self.query = query
        self.token = token
        self.headers = dict(headers or {})
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("chat")
        self.queue = asyncio.Queue()
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self.channel.on("open", self.opened.set)
        self.channel.on("close", self.closed.set)
        self.channel.on("message", lambda m: self.queue.put_nowait(m))
        self.offer_sdp = self.sent_sdp = self.answer_sdp = None
        self.location = None

    def munge(self, sdp):
        """The offer as POSTed (subclasses may rewrite it)."""
        return sdp

    async def offer(self):
        """Creates and POSTs the offer; returns (status, headers, body)."""
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)  # aiortc gathers here (non-trickle)
        self.offer_sdp = self.pc.localDescription.sdp
        self.sent_sdp = self.munge(self.offer_sdp)
        headers = {"Content-Type": "application/sdp", **self.headers}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        return await ahttp("POST", f"{self.base}/api/rtc{self.query}", self.sent_sdp.encode(),
                           headers, context=self.ssl_context)

    async def connect(self, timeout=15):
        """offer(), then the answer, then waits for the channel to open."""
        status, headers, body = await self.offer()
        check(status == 201, f"POST /api/rtc answered {status}: {body[:300]!r}")
        self.location = headers.get("Location")
        check(self.location and self.location.startswith("/api/rtc/"),
              f"bad Location header {self.location!r}")
        self.answer_sdp = body.decode()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer_sdp,
                                                                 type="answer"))
        try:
            await asyncio.wait_for(self.opened.wait(), timeout)
        except asyncio.TimeoutError:
            raise Failure(
                f"data channel did not open in {timeout} s (ice={self.pc.iceConnectionState}, "
                f"conn={self.pc.connectionState}, channel={self.channel.readyState})")
        return self

    async def close(self):
        try:
            await asyncio.wait_for(self.pc.close(), 5)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
