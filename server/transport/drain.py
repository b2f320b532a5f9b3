"""Graceful shutdown that keeps talking.

On SIGTERM the listeners close first, then, while every open connection is still read (aiohttp's
own shutdown stops reading them, so this runs before it):
1. every event still arriving is answered at once with NOT_READY ("this node is restarting");
2. the events already being handled finish and are answered (bets included: they are written or
   refused, never left hanging), within SHUTDOWN_DRAIN_S;
3. every websocket peer gets an Engine.IO close packet while the node keeps reading, so what a
   peer sent before it saw the close is still answered; then every transport still open is
   closed. Clients see a lost connection (not a Socket.IO disconnect, which socket.io-client
   would not retry) and reconnect, to another node behind the balancer;
4. then the app's resources stop in order, as they would anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

from aiohttp import web

from game.errors import NotReady
from server.settings import SETTINGS
from server.transport.socketio_server import SIO
from server.transport.websocket import PreparedMessage, writer_of

logger = logging.getLogger("thisthat.drain")

HANDOFF_WAIT_S = 1.0
SOCKETS_CLOSE_WAIT_S = 3.0


class Drain:
    """Counts the events being handled, and says when the node stopped taking new ones."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        if self.draining:
            raise NotReady("this node is restarting; reconnect and retry")
        self.in_flight += 1
        self._idle.clear()

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


async def drain_sockets(app: web.Application) -> None:
    """Once the listeners are closed (connections still read): answer, then hand sockets back."""
    drain = app[DRAIN]
    drain.draining = True
    started = time.monotonic()
    answered = await drain.wait_idle(app[SETTINGS].shutdown_drain_s)
    sio = app[SIO]
    sids = list(sio.eio.sockets)
    # Ask every websocket peer to leave with an Engine.IO close, still reading: what a peer sent
    # before it saw the close reaches us and is answered (NOT_READY) before its side closes.
    for socket in list(sio.eio.sockets.values()):
        writer = writer_of(socket)
        if writer is not None:
            writer.send(PreparedMessage("1"))
    await _until_gone(sio, HANDOFF_WAIT_S)
    # Peers that did not close (long-polling ones, or clients that ignore the close packet).
    for eio_sid in list(sio.eio.sockets):
        with contextlib.suppress(Exception):
            await sio.eio.disconnect(eio_sid)
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
