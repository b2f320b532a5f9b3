"""Graceful shutdown that keeps talking, and the per-address cap on new connections.

On SIGTERM the listeners close first (aiohttp's runner does that before `on_shutdown`); then:
1. every event still arriving is answered at once with NOT_READY ("this node is restarting");
2. the events already being handled finish and are answered (bets included: they are written or
   refused, never left hanging), within SHUTDOWN_DRAIN_S;
3. every socket's transport is closed with an Engine.IO close, which socket.io-client (and
   python-socketio's client) treat as a lost connection and so reconnect, to another node;
4. then the app's resources stop in order, as they would anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from game.errors import ErrorCode, GameError
from server import appkeys, metrics
from server.errors import error_response
from server.event_limits import EventLimiter

logger = logging.getLogger("thisthat.drain")

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
            raise GameError(ErrorCode.NOT_READY, "this node is restarting; reconnect and retry")
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


DRAIN = web.AppKey("drain", Drain)
CONNECTION_LIMITS = web.AppKey("connection_limits", EventLimiter)


async def drain_on_shutdown(app: web.Application) -> None:
    """aiohttp `on_shutdown`: listeners are closed; answer, then hand every socket back."""
    drain = app[DRAIN]
    drain.draining = True
    started = time.monotonic()
    answered = await drain.wait_idle(app[appkeys.SETTINGS].shutdown_drain_s)
    sio = app[appkeys.SIO]
    sids = list(sio.eio.sockets)
    for eio_sid in sids:
        with contextlib.suppress(Exception):
            await sio.eio.disconnect(eio_sid)
    # Give the close frames a moment to reach the peers before the runner cuts connections.
    deadline = time.monotonic() + SOCKETS_CLOSE_WAIT_S
    # engine.io offers no event for "no sockets left"; a bounded poll it is.
    while sio.eio.sockets and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    logger.info(
        "drained",
        extra={
            "seconds": round(time.monotonic() - started, 3),
            "allAnswered": answered,
            "stillInFlight": drain.in_flight,
            "socketsClosed": len(sids),
        },
    )


@web.middleware
async def connection_admission(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """New Engine.IO connections (a handshake has no `sid`) are capped per client address, and
    refused while the node drains."""
    if not request.path.startswith("/socket.io") or "sid" in request.query:
        return await handler(request)
    if request.app[DRAIN].draining:
        return error_response(
            GameError(ErrorCode.NOT_READY, "this node is restarting; connect to another")
        )
    from server.client_address import client_ip

    limit, window = request.app[appkeys.SETTINGS].connections_per_ip
    wait_ms = request.app[CONNECTION_LIMITS].hit("connect", client_ip(request), limit, window)
    if wait_ms:
        metrics.ERRORS.labels(ErrorCode.RATE_LIMITED.value).inc()
        return error_response(
            GameError(
                ErrorCode.RATE_LIMITED,
                f"too many new connections from this address; retry in {wait_ms} ms",
                retryAfterMs=wait_ms,
            )
        )
    return await handler(request)
