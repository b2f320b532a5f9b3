"""Leaderboard events: `leaderboard:get`, and joining or leaving a period's `leaderboard:update` room."""

from __future__ import annotations

from typing import Any

from game.leaderboard import Period
from server.application.services import SERVICES
from server.fanout.rooms import leaderboard_room
from server.runtime import metrics
from server.sockets.recovery import rooms_changed
from server.sockets.router import EventContext, EventRouter
from server.transport.socketio_server import SIO
from server.wire.schemas import LeaderboardGet, LeaderboardRoom
from server.wire.views import entry_view


def count_name_lookups(hits: int, misses: int) -> None:
    metrics.CACHE_LOOKUPS.labels("leaderboard", "hit").inc(hits)
    metrics.CACHE_LOOKUPS.labels("leaderboard", "miss").inc(misses)


async def handle_leaderboard_get(ctx: EventContext, payload: LeaderboardGet) -> dict[str, Any]:
    """A page of a period's board, from the top, from an offset or around the caller."""
    board = await ctx.app[SERVICES].leaderboards.page(
        Period(payload.period),
        payload.limit,
        ctx.session.user_id,
        offset=payload.offset or 0,
        around_me=payload.around == "me",
        on_names=count_name_lookups,
    )
    mine = board.mine
    return {
        "period": payload.period,
        "entries": [entry_view(standing) for standing in board.standings],
        "me": None if mine is None else {"rank": mine[0], "pnl": mine[1]},
        "total": board.total,
    }


async def handle_leaderboard_subscribe(
    ctx: EventContext, payload: LeaderboardRoom
) -> dict[str, Any]:
    await ctx.app[SIO].enter_room(ctx.sid, leaderboard_room(payload.period))
    await rooms_changed(ctx)
    return {}


async def handle_leaderboard_unsubscribe(
    ctx: EventContext, payload: LeaderboardRoom
) -> dict[str, Any]:
    await ctx.app[SIO].leave_room(ctx.sid, leaderboard_room(payload.period))
    await rooms_changed(ctx)
    return {}


def register(router: EventRouter) -> None:
    router.add("leaderboard:get", LeaderboardGet, handle_leaderboard_get)
    router.add("leaderboard:subscribe", LeaderboardRoom, handle_leaderboard_subscribe)
    router.add("leaderboard:unsubscribe", LeaderboardRoom, handle_leaderboard_unsubscribe)
