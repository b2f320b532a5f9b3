"""Which sessions a reconnecting client may take back, and keeping them in Redis while they live
(docs/protocol.md, "Reconnecting without losing a push").

A session is bound to its user: a `pid` presented with another user's token, after the window,
or after more personal pushes than are kept (storage/recovery.py PERSONAL_KEEP) yields a fresh
session, never another user's pushes. The token is checked as on any handshake (the connect
handler runs either way), and so are the limits. Sessions live in Redis, so the client may come
back through any node; a node refreshes its live sessions' expiry every KEEP_ALIVE_S, so after a
kill -9 they still last the window.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from game.errors import GameError
from server.auth.tokens import TOKENS
from server.fanout.pushes import PUSHES, RecoveryStore
from server.fanout.rooms import user_room
from server.runtime import metrics
from server.runtime.jobs import spawn, stop_if_cancelled
from server.sockets.router import EventContext
from server.sockets.sessions import SESSIONS, SocketSession
from server.transport.recovery import Opening, Resumption
from server.transport.socketio_server import SIO

logger = logging.getLogger("thisthat.recovery")

KEEP_ALIVE_S: Final = 30.0
# A pid is what this server hands out (token_urlsafe(18)); an offset is a decimal counter.
_PID: Final = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_OFFSET: Final = re.compile(r"^[0-9]{1,18}$")


class SocketRecovery:
    """The Resumer of server/transport/recovery.py, on this node's app."""

    def __init__(self, app: web.Application, store: RecoveryStore) -> None:
        self.app = app
        self.store = store  # storage/recovery.py, built by the pushes (server/fanout/pushes.py)

    async def resume(self, auth: dict[str, Any]) -> Resumption | None:
        pid, offset, token = auth.get("pid"), auth.get("offset"), auth.get("token")
        if not isinstance(pid, str) or not _PID.match(pid):
            return None
        try:
            claims = self.app[TOKENS].verify(token, "access", datetime.now(UTC))
        except GameError:
            return None  # the connect handler refuses it, as any handshake with that token
        try:
            session = await self.store.claim(pid, str(claims.user_id))
        except OSError:
            logger.warning("recovery unavailable: redis unreachable", exc_info=True)
            return None
        if session is None:
            return None
        after = session.since
        if isinstance(offset, str) and _OFFSET.match(offset):
            after = max(after, int(offset))
        # Every personal push after `after` must still be kept, or the client could not tell
        # what it missed: then it starts over (and `sync` gives it the state).
        personal = [room for room in session.rooms if room.startswith("user:")]
        if not (await self.store.missed(personal, [], after)).complete:
            return None
        return Resumption(pid, session.sid, session.rooms, after, session.generation)

    async def connected(self, sid: str, eio_sid: str, opening: Opening) -> None:
        pushes = self.app[PUSHES]
        pushes.recoverable.add(sid)
        resumed = opening.resumed
        metrics.RECOVERY_SESSIONS.labels("fresh" if resumed is None else "recovered").inc()
        if resumed is not None:
            logger.info("socket recovered", extra={"sid": sid, "after": resumed.after})
            pushes.replay(sid, eio_sid, resumed.rooms, resumed.after)

    async def begin(self, session: SocketSession, opening: Opening) -> None:
        """The socket is accepted: its session is stored (or taken back) under its pid."""
        resumed = opening.resumed
        session.pid = opening.pid
        rooms: tuple[str, ...] = (user_room(session.user_id),)
        if resumed is None:
            session.generation = 0
            since = await self.store.sequence()
        else:
            session.generation = resumed.generation
            rooms = resumed.rooms
            session.markets = {
                room.removeprefix("market:") for room in rooms if room.startswith("market:")
            }
            since = 0  # kept from the first connection of the session
        if resumed is None:
            await self.store.save_fields(
                opening.pid,
                str(session.user_id),
                session.sid,
                rooms,
                since,
                session.generation,
                [user_room(session.user_id)],
            )
        else:
            await self.store.keep_alive([opening.pid], [user_room(session.user_id)])

    async def rooms_changed(self, session: SocketSession) -> None:
        if session.pid is None:
            return
        rooms = self.app[SIO].manager.get_rooms(session.sid, "/")
        await self.store.set_rooms(session.pid, [room for room in rooms if room != session.sid])

    async def end(self, session: SocketSession) -> None:
        """The connection ended: the session waits out the window for its client."""
        self.app[PUSHES].recoverable.discard(session.sid)
        if session.pid is not None:
            await self.store.release(session.pid, session.generation)


RECOVERY: Final = web.AppKey("recovery", SocketRecovery)


async def rooms_changed(ctx: EventContext) -> None:
    """A socket joined or left rooms: its stored session follows, if it has one."""
    recovery = ctx.app.get(RECOVERY)
    if recovery is not None and ctx.session.pid is not None:
        await recovery.rooms_changed(ctx.session)


async def keep_sessions_alive(app: web.Application) -> None:
    recovery = app[RECOVERY]
    while True:
        await asyncio.sleep(KEEP_ALIVE_S)
        live = [session for session in app[SESSIONS].all() if session.pid is not None]
        try:
            await recovery.store.keep_alive(
                [session.pid for session in live if session.pid is not None],
                {user_room(session.user_id) for session in live},
            )
        except Exception:
            stop_if_cancelled()
            logger.warning("recovery sessions not refreshed", exc_info=True)


async def recovery_ctx(app: web.Application) -> AsyncIterator[None]:
    """Recovery on this node while the app runs (RECOVERY_WINDOW_S above 0)."""
    store = app[PUSHES].recovery
    if store is None:  # RECOVERY_WINDOW_S is 0
        yield
        return
    recovery = SocketRecovery(app, store)
    app[RECOVERY] = recovery
    app[SIO].resumer = recovery
    job = await spawn(app, keep_sessions_alive(app), name="recovery-keep-alive")
    yield
    await job.close()
    app[SIO].resumer = None
