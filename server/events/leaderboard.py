"""Leaderboard events: `leaderboard:get`, and joining or leaving a period's `leaderboard:update` room."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from game.leaderboard import Period, period_key
from server import appkeys, metrics
from server.leaderboard_push import entry_view
from server.rooms import leaderboard_room
from server.router import EventContext, router
from server.schemas import LeaderboardGet, LeaderboardRoom
from storage import leaderboards


def count_name_lookups(hits: int, misses: int) -> None:
    metrics.CACHE_LOOKUPS.labels("leaderboard", "hit").inc(hits)
    metrics.CACHE_LOOKUPS.labels("leaderboard", "miss").inc(misses)


@router.event("leaderboard:get", LeaderboardGet)
async def handle_leaderboard_get(ctx: EventContext, payload: LeaderboardGet) -> dict[str, Any]:
    # The current bucket of the period: today (UTC), this ISO week, or all time.
    bucket = period_key(Period(payload.period), datetime.now(UTC))
    standings, mine = await leaderboards.top(
        ctx.app[appkeys.DB_POOL],
        ctx.app[appkeys.REDIS],
        bucket,
        payload.limit,
        ctx.session.user_id,
        on_names=count_name_lookups,
    )
    return {
        "period": payload.period,
        "entries": [entry_view(standing) for standing in standings],
        "me": None if mine is None else {"rank": mine[0], "pnl": mine[1]},
    }


@router.event("leaderboard:subscribe", LeaderboardRoom)
async def handle_leaderboard_subscribe(
    ctx: EventContext, payload: LeaderboardRoom
) -> dict[str, Any]:
    await ctx.app[appkeys.SIO].enter_room(ctx.sid, leaderboard_room(payload.period))
    return {}


@router.event("leaderboard:unsubscribe", LeaderboardRoom)
async def handle_leaderboard_unsubscribe(
    ctx: EventContext, payload: LeaderboardRoom
) -> dict[str, Any]:
    await ctx.app[appkeys.SIO].leave_room(ctx.sid, leaderboard_room(payload.period))
    return {}
