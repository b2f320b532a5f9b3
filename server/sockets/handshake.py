"""The Socket.IO handshake: a socket is accepted for a valid access token and a user who still
exists, joins its user's room, and gets its `session` push right after the CONNECT answer."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, Final

import redis.asyncio as redis
from aiohttp import web

from game.errors import NotReady, RateLimited
from server.application.services import SERVICES
from server.auth.tokens import TOKENS
from server.fanout.pushes import PUSHES
from server.fanout.rooms import user_room
from server.runtime import metrics
from server.runtime.jobs import spawn, stop_if_cancelled
from server.runtime.resources import SOCKET_SLOTS
from server.settings import SETTINGS
from server.sockets.recovery import RECOVERY
from server.sockets.sessions import SESSIONS, SocketSession
from server.transport.socketio_server import SIO
from server.wire.refusals import UNAVAILABLE
from server.wire.views import user_view

logger = logging.getLogger("thisthat.realtime")

# How often this node vouches for its sockets in the cross-node count (storage/socket_slots.py).
SLOTS_KEEP_ALIVE_S: Final = 30.0


async def accept(app: web.Application, sid: str, auth: object, address: str) -> None:
    """Accept a socket whose handshake carries a valid access token, or raise the refusal."""
    token = auth.get("token") if isinstance(auth, dict) else None
    claims = app[TOKENS].verify(token, "access", datetime.now(UTC))
    sessions = app[SESSIONS]
    cap = app[SETTINGS].sockets_per_user
    too_many = RateLimited("too many sockets open for this user; close one first", 1000)
    try:
        # One atomic count across every node: simultaneous connects cannot pass it together.
        if not await app[SOCKET_SLOTS].claim(str(claims.user_id), sid, cap):
            raise too_many
    except (OSError, redis.RedisError):
        logger.warning("socket slots unavailable: counting this node only", exc_info=True)
        if sessions.sockets_of(claims.user_id) >= cap:
            raise too_many from None
    try:
        # Read before accepting: a socket is only accepted when its `session` can follow.
        user = await app[SERVICES].accounts.user(claims.user_id)
    except UNAVAILABLE:
        await release_slot(app, str(claims.user_id), sid)
        logger.warning("socket refused: database unavailable", exc_info=True)
        raise NotReady() from None
    except BaseException:
        await release_slot(app, str(claims.user_id), sid)
        raise
    session = SocketSession(sid, claims.user_id, claims.username or "", claims.expires_at)
    opening = app[SIO].opening(sid)
    recovery = app.get(RECOVERY)
    if opening is not None and recovery is not None:
        await recovery.begin(session, opening)
    sessions.add(session)
    if opening is None or opening.resumed is None:
        await app[SIO].enter_room(sid, user_room(claims.user_id))
    # A resumed socket joins its rooms when its missed pushes are sent (server/fanout/pushes.py),
    # so that nothing newer reaches it before them.
    update_gauges(app)
    logger.info(
        "socket connected", extra={"sid": sid, "userId": str(claims.user_id), "ip": address}
    )
    # `session` must follow the CONNECT packet, which the library sends after this returns.
    await spawn(app, _greet(app, session, user_view(user)))


async def _greet(app: web.Application, session: SocketSession, user: dict[str, Any]) -> None:
    await asyncio.sleep(0)
    # This socket lives on this node: deliver directly, no trip through Redis.
    await app[PUSHES].deliver_here(
        "session", {"user": user, "serverTime": datetime.now(UTC)}, session.sid
    )


def update_gauges(app: web.Application) -> None:
    sessions = app[SESSIONS]
    metrics.CONNECTED_SOCKETS.set(len(sessions))
    metrics.ACTIVE_USERS.set(sessions.active_users)


async def release_slot(app: web.Application, user_id: str, sid: str) -> None:
    """The socket is gone (or was refused): its place among the user's sockets is free."""
    try:
        await app[SOCKET_SLOTS].release(user_id, sid)
    except (OSError, redis.RedisError) as error:
        logger.warning(
            "socket slot not released; it lapses by itself", extra={"error": repr(error)}
        )


async def vouch_for_sockets(app: web.Application) -> None:
    """Tell every node's count that this node's sockets are still here, every KEEP_ALIVE_S."""
    while True:
        await asyncio.sleep(SLOTS_KEEP_ALIVE_S)
        try:
            await app[SOCKET_SLOTS].vouch(
                (str(session.user_id), session.sid) for session in app[SESSIONS].all()
            )
        except Exception:
            stop_if_cancelled()
            logger.warning("socket slots not refreshed", exc_info=True)
