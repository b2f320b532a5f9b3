"""The operator's read-only admin view at `/admin`: nodes, sockets, rooms and their sizes, the
feed, recent settlements and the ledger audit.

Off unless ADMIN_TOKEN is set (then `/admin` answers 404); the JSON behind the page needs
`Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time, and wrong tokens are counted
per address (past the limit: 429). Nothing here changes state.
Each node writes a heartbeat of its own sockets and rooms to Redis, so any node shows them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import hmac
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import redis.asyncio as redis
from aiohttp import web

from game.errors import AuthRequired
from server.http import playground
from server.http.rest import count_operator_token, json_response, presented_bearer
from server.mirror import runner as feed
from server.runtime.jobs import spawn, stop_if_cancelled
from server.runtime.resources import DB_POOL, REDIS
from server.settings import SETTINGS
from server.sockets.sessions import SESSIONS
from server.transport.socketio_server import SIO
from server.wire.codec import dumps_bytes
from storage import audit, keys, overview

logger = logging.getLogger("thisthat.admin")

HEARTBEAT_S: Final = 5.0
# A node whose heartbeat is older than this is gone (crashed or stopped).
NODE_GONE_S: Final = 3 * HEARTBEAT_S
# The audit reads every ledger row: run it at most once a minute per node, whoever asks.
AUDIT_EVERY_S: Final = 60.0
MAX_ROOMS: Final = 200
MAX_SOCKETS: Final = 500


class AdminView:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.node_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.started_at = datetime.now(UTC)
        self._audit: dict[str, Any] | None = None
        self._audit_lock = asyncio.Lock()
        # Set at shutdown: the loop stops on it even if a library's timeout swallowed the cancel.
        self.stopping = asyncio.Event()

    def local_rooms(self) -> list[dict[str, Any]]:
        """Rooms on this node with their socket counts, largest first (a socket's own room left out)."""
        rooms = self.app[SIO].manager.rooms.get("/", {})
        # The largest MAX_ROOMS without sorting them all (a node holds a room per user).
        largest = heapq.nsmallest(
            MAX_ROOMS,
            (
                (-len(members), room)
                for room, members in rooms.items()
                if room is not None and room not in members
            ),
        )
        return [{"room": room, "size": -negative_size} for negative_size, room in largest]

    def heartbeat(self) -> dict[str, Any]:
        sessions = self.app[SESSIONS]
        return {
            "id": self.node_id,
            "startedAt": self.started_at,
            "seenAt": datetime.now(UTC),
            "sockets": len(sessions),
            "users": sessions.active_users,
            "rooms": self.local_rooms(),
        }

    async def beat_forever(self) -> None:
        client = self.app[REDIS]
        while not self.stopping.is_set():
            try:
                await client.hset(keys.NODES, self.node_id, dumps_bytes(self.heartbeat()))
            except (redis.RedisError, OSError):
                stop_if_cancelled()
                logger.warning("admin heartbeat failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), HEARTBEAT_S)

    async def nodes(self) -> list[dict[str, Any]]:
        client = self.app[REDIS]
        now = datetime.now(UTC)
        # This node speaks for itself as of now; the others as of their last heartbeat.
        alive = [orjson.loads(dumps_bytes(self.heartbeat()))]
        for node_id, raw in (await client.hgetall(keys.NODES)).items():
            if node_id == self.node_id:
                continue
            node = orjson.loads(raw)
            if (now - datetime.fromisoformat(node["seenAt"])).total_seconds() > NODE_GONE_S:
                await client.hdel(keys.NODES, node_id)
                continue
            alive.append(node)
        return sorted(alive, key=lambda node: node["id"])

    def sockets(self) -> list[dict[str, Any]]:
        sio = self.app[SIO]
        return [
            {
                "sid": session.sid,
                "userId": str(session.user_id),
                "username": session.username,
                "expiresAt": session.expires_at,
                "rooms": sorted(room for room in sio.rooms(session.sid) if room != session.sid),
            }
            for session in self.app[SESSIONS].all()[:MAX_SOCKETS]
        ]

    async def audit(self) -> dict[str, Any]:
        async with self._audit_lock:
            now = datetime.now(UTC)
            if self._audit is None or (now - self._audit["at"]).total_seconds() > AUDIT_EVERY_S:
                async with self.app[DB_POOL].acquire() as connection:
                    violations = await audit.check_all(
                        connection,  # type: ignore[arg-type]  # a pool's proxy acts as the connection
                        self.app[REDIS],
                        self.app[SETTINGS].max_balance,
                        now,
                    )
                self._audit = {
                    "at": now,
                    "passed": not violations,
                    "violations": len(violations),
                    "first": [str(violation) for violation in violations[:20]],
                }
            return self._audit

    async def state(self) -> dict[str, Any]:
        _, feed_report = await feed.feed_readiness(self.app)
        return {
            "node": self.node_id,
            "at": datetime.now(UTC),
            "nodes": await self.nodes(),
            "sockets": self.sockets(),
            "rooms": self.local_rooms(),
            "feed": feed_report,
            "settlements": await overview.recent_settlements(self.app[DB_POOL], 20),
            "audit": await self.audit(),
        }


ADMIN = web.AppKey("admin_view", AdminView)


def _check_enabled(request: web.Request) -> str:
    token = request.app[SETTINGS].admin_token
    if not token:
        raise web.HTTPNotFound()
    return token


async def admin_page(request: web.Request) -> web.StreamResponse:
    _check_enabled(request)
    return playground.page(playground.STATIC / "admin" / "index.html")


async def admin_script(request: web.Request) -> web.StreamResponse:
    _check_enabled(request)
    return web.FileResponse(playground.STATIC / "admin" / "admin.js")


async def admin_style(request: web.Request) -> web.StreamResponse:
    _check_enabled(request)
    return web.FileResponse(playground.STATIC / "admin" / "admin.css")


async def admin_state(request: web.Request) -> web.Response:
    expected = _check_enabled(request)
    presented = presented_bearer(request)
    right = presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
    if presented is not None:
        await count_operator_token(request, right)
    if not right:
        raise AuthRequired("send Authorization: Bearer <ADMIN_TOKEN>")
    return json_response(await request.app[ADMIN].state())


async def admin_ctx(app: web.Application) -> AsyncIterator[None]:
    """The node's heartbeat, whether or not this node serves the page: any node may be asked."""
    view = AdminView(app)
    app[ADMIN] = view
    job = await spawn(app, view.beat_forever(), name="admin-heartbeat")
    yield
    view.stopping.set()
    await job.close()
    try:
        await app[REDIS].hdel(keys.NODES, view.node_id)
    except (redis.RedisError, OSError):
        logger.debug("heartbeat removal failed; it goes stale by itself", exc_info=True)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin", admin_page)
    app.router.add_get("/admin/admin.js", admin_script)
    app.router.add_get("/admin/admin.css", admin_style)
    app.router.add_get("/admin/state", admin_state)
