"""`leaderboard:update` pushes: at most one a second per period across every node, the last never lost.

The first change in a second takes a Redis key (SET NX PX 1000) and pushes at once. A change that
finds the key taken schedules one trailing push per node and period: it waits for the key to
expire and pushes the then-current board, so the final state of a burst always goes out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from game.leaderboard import Period, period_key
from server import appkeys
from server.jobs import spawn
from server.rooms import leaderboard_room
from storage import keys, leaderboards

logger = logging.getLogger("thisthat.leaderboard")

THROTTLE_MS: Final = 1000
PUSH_SIZE: Final = 20
# A trailing push retries while other nodes keep taking the key; each try waits out one window.
MAX_TRAILING_TRIES: Final = 10


def entry_view(standing: leaderboards.Standing) -> dict[str, Any]:
    return {
        "rank": standing.rank,
        "userId": standing.user_id,
        "username": standing.username,
        "pnl": standing.pnl,
    }


async def current_board(app: web.Application, period: Period, limit: int) -> list[dict[str, Any]]:
    bucket = period_key(period, datetime.now(UTC))
    standings, _ = await leaderboards.top(app[appkeys.DB_POOL], app[appkeys.REDIS], bucket, limit)
    return [entry_view(standing) for standing in standings]


async def leaderboards_changed(
    app: web.Application, periods: Iterable[Period] = tuple(Period)
) -> None:
    """Tell subscribers of these periods, within the one-a-second budget."""
    client = app[appkeys.REDIS]
    trailing = app[appkeys.LEADERBOARD_TRAILING]
    for period in periods:
        if await client.set(keys.leaderboard_throttle(period.value), "1", nx=True, px=THROTTLE_MS):
            await _push(app, period)
        elif period not in trailing:
            trailing.add(period)
            await spawn(
                app, _trailing_push(app, period), name=f"leaderboard-trailing-{period.value}"
            )


async def _trailing_push(app: web.Application, period: Period) -> None:
    client = app[appkeys.REDIS]
    key = keys.leaderboard_throttle(period.value)
    try:
        for _ in range(MAX_TRAILING_TRIES):
            wait_ms = await client.pttl(key)
            await asyncio.sleep(max(int(wait_ms), 10) / 1000)
            if await client.set(key, "1", nx=True, px=THROTTLE_MS):
                # Cleared before reading the board: a change from now on schedules its own push.
                app[appkeys.LEADERBOARD_TRAILING].discard(period)
                await _push(app, period)
                return
        logger.warning("trailing leaderboard push gave up", extra={"period": period.value})
    except Exception:
        logger.exception("trailing leaderboard push failed", extra={"period": period.value})
    finally:
        app[appkeys.LEADERBOARD_TRAILING].discard(period)


async def _push(app: web.Application, period: Period) -> None:
    entries = await current_board(app, period, PUSH_SIZE)
    app[appkeys.PUSHES].emit(
        "leaderboard:update",
        {"period": period.value, "entries": entries},
        leaderboard_room(period.value),
    )
