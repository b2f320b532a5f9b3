"""The one module that builds the Socket.IO server: its options, the handshake and event
registration, and its lifetime in the app (the token sweeper, sockets closed at shutdown)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import socketio
from aiohttp import web

from game.errors import ErrorCode, GameError, UnknownEvent
from server.runtime import metrics
from server.runtime.jobs import spawn
from server.runtime.resources import SOCKET_SLOTS
from server.settings import SETTINGS
from server.sockets.expiry import sweep_token_deadlines
from server.sockets.handshake import accept, update_gauges, vouch_for_sockets
from server.sockets.recovery import RECOVERY
from server.sockets.router import EventRouter, dispatch
from server.sockets.sessions import SESSIONS
from server.transport import origins
from server.transport.client_address import client_ip
from server.transport.redis_manager import socket_manager
from server.transport.socketio_server import SIO, ClientLimits, GameSocketServer, quiet_library_logs
from server.wire.codec import OrjsonModule
from server.wire.refusals import ack_error

logger = logging.getLogger("thisthat.realtime")


def create_socket_server(
    app: web.Application, redis_url: str, router: EventRouter
) -> socketio.AsyncServer:
    settings = app[SETTINGS]
    quiet_library_logs()
    sio = GameSocketServer(
        async_mode="aiohttp",
        client_manager=socket_manager(redis_url),
        json=OrjsonModule,
        # The handshake Origin must be one of CORS_ORIGINS or the server's own; clients without
        # one (native games, load testers) are not browsers and pass.
        cors_allowed_origins=origins.engineio_check(settings.cors_origins),
        ping_interval=settings.socket_ping_interval_s,
        ping_timeout=settings.socket_ping_timeout_s,
        max_http_buffer_size=settings.socket_max_message_bytes,
        logger=False,
        engineio_logger=False,
        limits=ClientLimits(
            max_attachments=settings.socket_max_attachments,
            max_message_bytes=settings.socket_max_message_bytes,
            auth_timeout_s=settings.socket_auth_timeout_s,
        ),
    )

    async def connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
        request = environ.get("aiohttp.request")
        address = client_ip(request) if request is not None else "unknown"
        try:
            await accept(app, sid, auth, address)
        except GameError as error:
            refuse(error)

    async def disconnect(sid: str, reason: object = None) -> None:
        session = app[SESSIONS].remove(sid)
        update_gauges(app)
        if session is not None:
            app[SOCKET_SLOTS].release_soon(str(session.user_id), sid)
        recovery = app.get(RECOVERY)
        if session is not None and recovery is not None:
            try:
                await recovery.end(session)
            except OSError:
                logger.warning("recovery session not released", exc_info=True)
        if session is not None:
            logger.info(
                "socket disconnected",
                extra={"sid": sid, "userId": str(session.user_id), "reason": str(reason)},
            )

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    for name, route in router.routes.items():
        sio.on(name, _make_handler(app, route))
    # Any other event name: an error ack, so a client that asked for one is not left waiting.
    sio.on("*", _unknown_event)
    return sio


async def _unknown_event(event: str, sid: str, *_: object) -> dict[str, Any]:
    metrics.ERRORS.labels(ErrorCode.UNKNOWN_EVENT.value).inc()
    logger.debug("unknown event", extra={"sid": sid, "event": event[:100]})
    return ack_error(UnknownEvent(event))


def _make_handler(app: web.Application, route: Any) -> Any:
    async def handle(sid: str, data: object = None, *_: object) -> dict[str, Any]:
        return await dispatch(app, route, sid, data)

    return handle


async def socket_ctx(app: web.Application) -> AsyncIterator[None]:
    """The token sweeper while the app runs; sockets closed and the Redis manager stopped after."""
    sio = app[SIO]
    sweeper = await spawn(app, sweep_token_deadlines(app), name="token-sweeper")
    voucher = await spawn(app, vouch_for_sockets(app), name="socket-slots")
    yield
    await voucher.close()
    await sweeper.close()
    for session in app[SESSIONS].all():
        try:
            await sio.disconnect(session.sid)
        except Exception:  # noqa: BLE001 - shutting down; a socket already gone is fine
            logger.debug("disconnect at shutdown failed", exc_info=True)
    await sio.shutdown()
    await sio.manager.close()
    # The places of this node's sockets are given back before Redis closes, not left to lapse.
    await app[SOCKET_SLOTS].flush()


def refuse(error: GameError) -> NoReturn:
    """Refuse the handshake with the protocol's error object as the CONNECT_ERROR data."""
    refusal = socketio.exceptions.ConnectionRefusedError()
    # Top-level code/message for any client; `data` is the error object of the protocol.
    refusal.error_args = {
        "message": error.message,
        "code": error.code.value,
        "data": error.to_dict(),
    }
    raise refusal
