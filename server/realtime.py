"""The Socket.IO server: handshake authentication, rooms, token expiry, and event registration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, NoReturn

import redis.asyncio as redis
import socketio
from aiohttp import web

from game.errors import ErrorCode, GameError, RateLimited, UserGone
from server import metrics, origins
from server.application import SERVICES
from server.client_address import client_ip
from server.errors import UNAVAILABLE, NotReady, UnknownEvent, ack_error
from server.jobs import spawn, stop_if_cancelled
from server.pushes import PUSHES, SIO
from server.rooms import user_room
from server.router import EventRouter, dispatch
from server.sessions import SESSIONS, SocketSession
from server.settings import SETTINGS, Settings
from server.socketio_server import ClientLimits, GameSocketServer, quiet_library_logs
from server.tokens import TOKENS
from server.views import user_view
from server.websocket import WireLimits, websocket_class
from server.wire import OrjsonModule
from storage import keys

logger = logging.getLogger("thisthat.realtime")

SWEEP_INTERVAL_S = 1.0


class RedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]  # untyped library base
    """Socket.IO's Redis manager on a bounded, blocking connection pool.

    The stock manager's pool opens a new connection whenever every one is busy, so a burst of
    emits (one per bet) keeps opening connections; a bounded pool makes the burst wait for one
    of a few warm connections instead.
    """

    MAX_CONNECTIONS = 16

    def _redis_connect(self) -> None:
        pool = redis.BlockingConnectionPool.from_url(
            self.redis_url, max_connections=self.MAX_CONNECTIONS, timeout=10
        )
        self.redis = redis.Redis(connection_pool=pool)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True


def create_socket_server(
    app: web.Application, redis_url: str, router: EventRouter
) -> socketio.AsyncServer:
    settings = app[SETTINGS]
    quiet_library_logs()
    sio = GameSocketServer(
        async_mode="aiohttp",
        client_manager=RedisManager(redis_url, channel=keys.SOCKETIO_CHANNEL),
        json=OrjsonModule,
        # The handshake Origin must be one of CORS_ORIGINS or the server's own; clients without
        # one (native games, load testers) are not browsers and pass.
        cors_allowed_origins=origins.engineio_check(settings.cors_origins),
        ping_interval=25,
        ping_timeout=20,
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
        await _connect(app, sio, sid, auth, address)

    async def disconnect(sid: str, reason: object = None) -> None:
        session = app[SESSIONS].remove(sid)
        _update_gauges(app)
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


async def _connect(
    app: web.Application, sio: socketio.AsyncServer, sid: str, auth: object, address: str
) -> None:
    token = auth.get("token") if isinstance(auth, dict) else None
    try:
        claims = app[TOKENS].verify(token, "access", datetime.now(UTC))
    except GameError as error:
        _refuse(error)
    sessions = app[SESSIONS]
    if sessions.sockets_of(claims.user_id) >= app[SETTINGS].sockets_per_user:
        _refuse(RateLimited("too many sockets open for this user; close one first", 1000))
    try:
        # Read before accepting: a socket is only accepted when its `session` can follow.
        user = await app[SERVICES].accounts.user(claims.user_id)
    except UNAVAILABLE:
        logger.warning("socket refused: database unavailable", exc_info=True)
        _refuse(NotReady())
    except UserGone as error:
        _refuse(error)
    session = SocketSession(sid, claims.user_id, claims.username or "", claims.expires_at)
    sessions.add(session)
    await sio.enter_room(sid, user_room(claims.user_id))
    _update_gauges(app)
    logger.info(
        "socket connected", extra={"sid": sid, "userId": str(claims.user_id), "ip": address}
    )
    # `session` must follow the CONNECT packet, which the library sends after this returns.
    await spawn(app, _greet(app, session, user_view(user)))


def _refuse(error: GameError) -> NoReturn:
    refusal = socketio.exceptions.ConnectionRefusedError()
    # Top-level code/message for any client; `data` is the error object of the protocol.
    refusal.error_args = {
        "message": error.message,
        "code": error.code.value,
        "data": error.to_dict(),
    }
    raise refusal


async def _greet(app: web.Application, session: SocketSession, user: dict[str, Any]) -> None:
    await asyncio.sleep(0)
    # This socket lives on this node: deliver directly, no trip through Redis.
    await app[PUSHES].deliver_here(
        "session", {"user": user, "serverTime": datetime.now(UTC)}, session.sid
    )


def _update_gauges(app: web.Application) -> None:
    sessions = app[SESSIONS]
    metrics.CONNECTED_SOCKETS.set(len(sessions))
    metrics.ACTIVE_USERS.set(sessions.active_users)


async def _sweep_token_deadlines(app: web.Application) -> None:
    """Warn sockets about 60 s before their token expires; disconnect those that did not refresh."""
    sio = app[SIO]
    sessions = app[SESSIONS]
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        for session, kind in sessions.due(datetime.now(UTC)):
            try:
                if kind == "expiring":
                    await app[PUSHES].deliver_here(
                        "auth:expiring", {"expiresAt": session.expires_at}, session.sid
                    )
                else:
                    logger.info("token expired; disconnecting", extra={"sid": session.sid})
                    await sio.disconnect(session.sid)
            except Exception:
                stop_if_cancelled()
                logger.exception("token sweep failed", extra={"sid": session.sid})


async def socket_ctx(app: web.Application) -> AsyncIterator[None]:
    """The token sweeper while the app runs; sockets closed and the Redis manager stopped after."""
    sio = app[SIO]
    sweeper = await spawn(app, _sweep_token_deadlines(app), name="token-sweeper")
    yield
    await sweeper.close()
    for session in app[SESSIONS].all():
        try:
            await sio.disconnect(session.sid)
        except Exception:  # noqa: BLE001 - shutting down; a socket already gone is fine
            logger.debug("disconnect at shutdown failed", exc_info=True)
    await sio.shutdown()


def use_game_websocket(sio: socketio.AsyncServer, settings: Settings) -> None:
    """Sockets on the websocket transport write their own frames (server/websocket.py)."""
    wire = WireLimits(
        compress_min_bytes=settings.ws_compress_min_bytes,
        high_water_bytes=settings.ws_buffer_high_water_bytes,
        limit_bytes=settings.ws_buffer_limit_bytes,
    )
    sio.eio._async = {**sio.eio._async, "websocket": websocket_class(wire)}
