"""Market activity: `market:activity` pages a market's recent bets; the live batches reach its
subscribers as `market:activity` pushes (services/activity.py)."""

from __future__ import annotations

from typing import Any

from server.application.services import SERVICES
from server.fanout.market_cache import MARKET_CACHE, lookup
from server.runtime.resources import DB_POOL
from server.sockets.router import EventContext, EventRouter
from server.wire.schemas import MarketActivity
from server.wire.views import activity_views, decode_time_count_cursor, encode_cursor


async def handle_market_activity(ctx: EventContext, payload: MarketActivity) -> dict[str, Any]:
    """A market's recent bets, newest first: who (unless hidden), side, amount, odds, when."""
    after = None if payload.cursor is None else decode_time_count_cursor(payload.cursor)
    row = await lookup(ctx.app[DB_POOL], ctx.app[MARKET_CACHE], str(payload.marketId))
    page = await ctx.app[SERVICES].activity.page(row.id, after, payload.limit)
    next_cursor = None
    if page.next_position is not None:
        placed_at, shown = page.next_position
        # Full microsecond precision: the position is an exact time of the bets table.
        next_cursor = encode_cursor(placed_at.isoformat(), shown)
    return {"bets": activity_views(page.bets), "nextCursor": next_cursor}


def register(router: EventRouter) -> None:
    router.add("market:activity", MarketActivity, handle_market_activity)
