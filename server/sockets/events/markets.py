"""Markets for players: list and get from the in-memory cache, subscribe to their rooms, chart
their odds history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from game.odds_history import Interval
from server.fanout.market_cache import MARKET_CACHE, lookup
from server.fanout.rooms import market_room
from server.runtime.resources import DB_POOL
from server.sockets.presence import add_watchers
from server.sockets.recovery import rooms_changed
from server.sockets.router import EventContext, EventRouter
from server.sockets.sessions import SESSIONS
from server.transport.socketio_server import SIO
from server.wire.schemas import MarketGet, MarketHistory, MarketIds, MarketsList
from server.wire.views import candle_view, market_view
from services import odds_history


async def handle_markets_list(ctx: EventContext, payload: MarketsList) -> dict[str, Any]:
    markets, next_cursor = ctx.app[MARKET_CACHE].page(payload.status, payload.cursor, payload.limit)
    return {"markets": markets, "nextCursor": next_cursor}


async def handle_market_get(ctx: EventContext, payload: MarketGet) -> dict[str, Any]:
    row = await lookup(ctx.app[DB_POOL], ctx.app[MARKET_CACHE], str(payload.marketId))
    market = market_view(row)
    await add_watchers(ctx, [market])
    return {"market": market}


async def handle_market_history(ctx: EventContext, payload: MarketHistory) -> dict[str, Any]:
    """A market's odds over time, as candles."""
    row = await lookup(ctx.app[DB_POOL], ctx.app[MARKET_CACHE], str(payload.marketId))
    interval = None if payload.interval is None else Interval(payload.interval)
    chart = await odds_history.chart(
        ctx.app[DB_POOL], row, interval, payload.start, payload.end, datetime.now(UTC)
    )
    return {
        "points": [candle_view(candle) for candle in chart.candles],
        "interval": chart.interval.value,
    }


async def handle_market_subscribe(ctx: EventContext, payload: MarketIds) -> dict[str, Any]:
    # All ids are checked before any room is joined: an unknown id changes nothing.
    ids = list(dict.fromkeys(str(market_id) for market_id in payload.marketIds))
    rows = [await lookup(ctx.app[DB_POOL], ctx.app[MARKET_CACHE], market_id) for market_id in ids]
    sio = ctx.app[SIO]
    for market_id in ids:
        await sio.enter_room(ctx.sid, market_room(market_id))
        ctx.app[SESSIONS].subscribe(ctx.session, market_id)
    await rooms_changed(ctx)
    markets = [market_view(row) for row in rows]
    await add_watchers(ctx, markets)
    return {"markets": markets}


async def handle_market_unsubscribe(ctx: EventContext, payload: MarketIds) -> dict[str, Any]:
    sio = ctx.app[SIO]
    for market_id in {str(market_id) for market_id in payload.marketIds}:
        await sio.leave_room(ctx.sid, market_room(market_id))
        ctx.app[SESSIONS].unsubscribe(ctx.session, market_id)
    await rooms_changed(ctx)
    return {}


async def subscribed_markets(ctx: EventContext) -> dict[str, Any]:
    cache = ctx.app[MARKET_CACHE]
    views = [cache.view(market_id) for market_id in sorted(ctx.session.markets)]
    return {"markets": [view for view in views if view is not None]}


def register(router: EventRouter) -> None:
    router.add("markets:list", MarketsList, handle_markets_list)
    router.add("market:get", MarketGet, handle_market_get)
    router.add("market:history", MarketHistory, handle_market_history)
    router.add("market:subscribe", MarketIds, handle_market_subscribe)
    router.add("market:unsubscribe", MarketIds, handle_market_unsubscribe)
    router.add_sync_part(subscribed_markets)
