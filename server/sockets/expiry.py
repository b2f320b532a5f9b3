"""Access tokens running out on open sockets: a warning about a minute before, a disconnect at
expiry unless the socket refreshed (`auth:refresh`)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from game.errors import TokenExpired
from server.fanout.pushes import PUSHES
from server.runtime.jobs import stop_if_cancelled
from server.sockets.sessions import SESSIONS
from server.transport.socketio_server import SIO

logger = logging.getLogger("thisthat.realtime")

SWEEP_INTERVAL_S: Final = 1.0
EXPIRED_MESSAGE: Final = (
    "access token expired: refresh it (POST /auth/refresh) and connect again with the new one"
)


async def sweep_token_deadlines(app: web.Application) -> None:
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
                    # Said before the disconnect, which socket.io-client does not retry by itself:
                    # the client refreshes its token and connects again (docs/protocol.md).
                    await app[PUSHES].deliver_here(
                        "auth:expired", TokenExpired(EXPIRED_MESSAGE).to_dict(), session.sid
                    )
                    await asyncio.sleep(0)
                    await sio.disconnect(session.sid)
            except Exception:
                stop_if_cancelled()
                logger.exception("token sweep failed", extra={"sid": session.sid})
