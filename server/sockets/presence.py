"""This node's part in presence: every PRESENCE_INTERVAL_S it writes who watches what here and
who is connected (services/presence.py), and pushes `market:watchers` to a market's room when
its count changed; the market answers carry the count."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import redis.asyncio as redis
from aiohttp import web

from server.fanout.pushes import PUSHES
from server.fanout.rooms import market_room
from server.runtime import metrics
from server.runtime.jobs import spawn, stop_if_cancelled
from server.runtime.resources import REDIS
from server.settings import SETTINGS
from server.sockets.router import EventContext
from server.sockets.sessions import SESSIONS
from services.presence import Presence

logger = logging.getLogger("thisthat.presence")

PRESENCE: Final = web.AppKey("presence", Presence)


async def keep_presence(app: web.Application) -> None:
    presence = app[PRESENCE]
    tally = app[SESSIONS].presence
    pushes = app[PUSHES]
    interval = app[SETTINGS].presence_interval_s
    failing = False
    while True:
        await asyncio.sleep(interval)
        try:
            totals = await presence.publish(tally)
        except Exception:
            stop_if_cancelled()
            metrics.REDIS_ERRORS.labels("presence").inc()
            if not failing:  # one line per outage, not one per interval
                logger.warning("presence not written; counts go on from the last", exc_info=True)
            failing = True
            continue
        if failing:
            logger.info("presence written again")
            failing = False
        for market_id, watchers in totals.changed.items():
            pushes.emit(
                "market:watchers",
                {"marketId": market_id, "watchers": watchers},
                market_room(market_id),
            )


async def add_watchers(ctx: EventContext, markets: list[dict[str, Any]]) -> None:
    """Each market view gets `watchers`, the caller counted as they are now. Without Redis, the
    counts this node read last: a market answer does not fail for want of them."""
    presence = ctx.app[PRESENCE]
    tally = ctx.app[SESSIONS].presence
    user_id = str(ctx.session.user_id)
    here = {market["id"]: tally.watches(user_id, market["id"]) for market in markets}
    try:
        counts = await presence.watchers(user_id, here)
    except (OSError, redis.RedisError):
        metrics.REDIS_ERRORS.labels("presence").inc()
        last = presence.totals.watchers
        counts = {
            market_id: max(last.get(market_id, 0), int(mine)) for market_id, mine in here.items()
        }
    for market in markets:
        market["watchers"] = counts[market["id"]]


async def presence_ctx(app: web.Application) -> AsyncIterator[None]:
    """Needs Redis, the sessions and the pushes; this node's share leaves the counts at shutdown."""
    presence = Presence(app[REDIS], app[SETTINGS].presence_interval_s)
    app[PRESENCE] = presence
    job = await spawn(app, keep_presence(app), name="presence")
    yield
    await job.close()
    try:
        await presence.leave(app[SESSIONS].presence)
    except (OSError, redis.RedisError) as error:
        logger.warning("presence not withdrawn; it lapses by itself", extra={"error": repr(error)})
