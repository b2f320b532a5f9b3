"""Graceful shutdown that keeps talking.

On SIGTERM the listeners close first, then, while every open connection is still read (aiohttp's
own shutdown stops reading them, so this runs before it):
1. every event still arriving is answered at once with NOT_READY ("this node is restarting");
2. the events already being handled finish and are answered (bets included: they are written or
   refused, never left hanging), within SHUTDOWN_DRAIN_S;
3. for up to HANDOFF_WAIT_S more, a socket that sends an event gets its NOT_READY and right behind
   it the end of its connection, so a client that keeps sending has nothing left unanswered;
   then the rest are ended;
4. every connection is closed at the transport: a websocket gets a WebSocket close frame with
   code 1012 (Service Restart) after the answers queued for it, then its TCP connection ends;
   a long-polling socket is dropped without an Engine.IO close, so its next poll is refused.
   Clients see a lost connection and reconnect by themselves, to another node behind the
   balancer. An Engine.IO close packet or a Socket.IO disconnect would read as the server
   sending the client away on purpose: python-socketio's client (engineio.AsyncClient treats a
   CLOSE packet as SERVER_DISCONNECT) and socket.io-client (`io server disconnect`) do not retry
   after those. An event still on the wire when its connection ends gets no answer (it is not
   handled either); the client re-sends it after reconnecting;
5. then the app's resources stop in order, as they would anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import WSCloseCode, web

from game.errors import NotReady
from server.settings import SETTINGS
from server.transport.socketio_server import SIO
from server.transport.websocket import FrameWriter, frame_header, writer_of

logger = logging.getLogger("thisthat.drain")

HANDOFF_WAIT_S = 1.0
SOCKETS_CLOSE_WAIT_S = 3.0
OPCODE_CLOSE: Final = 0x8
# RFC 6455 section 7.4.1: "the server is terminating the connection because it is restarting".
SERVICE_RESTART: Final = frame_header(OPCODE_CLOSE, 2) + struct.pack(
    "!H", WSCloseCode.SERVICE_RESTART
)


class Drain:
    """Counts the events being handled, and says when the node stopped taking new ones."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        # Set once every event in flight is answered: told of each event refused while draining.
        self.on_refusal: Callable[[str], None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        if self.draining:
            raise NotReady("this node is restarting; reconnect and retry")
        self.in_flight += 1
        self._idle.clear()

    def refused(self, sid: str) -> None:
        """An event of socket `sid` was refused with NOT_READY because the node drains."""
        if self.on_refusal is not None:
            self.on_refusal(sid)

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        return self._idle.is_set()


async def _until_gone(sio: Any, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    # engine.io offers no event for "no sockets left"; a bounded poll it is.
    while sio.eio.sockets and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


DRAIN: Final = web.AppKey("drain", Drain)


def hand_back(writer: FrameWriter) -> None:
    """End a websocket as a lost connection: the frames queued for it (answers included), a close
    frame saying the server restarts, then the end of the TCP connection, which also ends the
    socket's read loop and with it the engine.io socket.

    Nothing is written after the close frame: the transport is closing, so the writer refuses
    every later frame.
    """
    writer.flush()
    if writer.closed or writer.transport.is_closing():
        return
    writer.transport.write(SERVICE_RESTART)
    writer.transport.close()


async def drain_sockets(app: web.Application) -> None:
    """Once the listeners are closed (connections still read): answer, then hand sockets back."""
    drain = app[DRAIN]
    drain.draining = True
    started = time.monotonic()
    answered = await drain.wait_idle(app[SETTINGS].shutdown_drain_s)
    sio = app[SIO]
    sids = list(sio.eio.sockets)
    loop = asyncio.get_running_loop()

    def after_refusal(sid: str) -> None:
        socket = sio.eio.sockets.get(sio.manager.eio_sid_from_sid(sid, "/"))
        writer = writer_of(socket) if socket is not None else None
        if writer is not None:
            # Runs after this loop turn, in which the refusal's ack is queued to this writer.
            loop.call_soon(hand_back, writer)

    # A socket still sending gets its refusal and, right behind it, the end of its connection,
    # so nothing it sent is left unanswered; the quiet ones are handed back after the wait.
    drain.on_refusal = after_refusal
    await _until_gone(sio, HANDOFF_WAIT_S)
    for eio_sid, socket in list(sio.eio.sockets.items()):
        writer = writer_of(socket)
        if writer is not None:
            hand_back(writer)
        else:
            # Long-polling: no Engine.IO close, so the client's next poll fails and it retries.
            with contextlib.suppress(Exception):
                await socket.close(wait=False, abort=True, reason=sio.eio.reason.TRANSPORT_CLOSE)
            sio.eio.sockets.pop(eio_sid, None)
    await _until_gone(sio, SOCKETS_CLOSE_WAIT_S)
    logger.info(
        "drained",
        extra={
            "seconds": round(time.monotonic() - started, 3),
            "allAnswered": answered,
            "stillInFlight": drain.in_flight,
            "socketsClosed": len(sids),
        },
    )
