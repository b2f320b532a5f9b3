"""Betting events: `bet:place`, `bets:list`, and the player's open bets in `sync`."""

from __future__ import annotations

from typing import Any

from game.bets import BetRequest
from game.markets import Side
from server.application.services import SERVICES
from server.sockets.router import EventContext, EventRouter
from server.wire.schemas import BetPlace, BetsList
from server.wire.views import bet_view, decode_time_id_cursor, encode_cursor, placed_bet_view


async def handle_bet_place(ctx: EventContext, payload: BetPlace) -> dict[str, Any]:
    request = BetRequest(
        user_id=ctx.session.user_id,
        market_id=payload.marketId,
        client_bet_id=payload.clientBetId,
        side=Side(payload.side),
        amount=payload.amount,
        expected_odds=payload.expectedOdds,
        max_slippage=payload.maxSlippage,
    )
    placed = await ctx.app[SERVICES].betting.place(request, asker=ctx.sid)
    return placed_bet_view(placed)


async def repeat_of_bet_place(ctx: EventContext, payload: BetPlace) -> dict[str, Any] | None:
    """The bet placed before under this clientBetId, answered as `bet:place` answered it."""
    placed = await ctx.app[SERVICES].betting.placed_before(ctx.session.user_id, payload.clientBetId)
    if placed is None:
        return None
    return placed_bet_view(placed)


async def handle_bets_list(ctx: EventContext, payload: BetsList) -> dict[str, Any]:
    cursor = None if payload.cursor is None else decode_time_id_cursor(payload.cursor)
    rows = await ctx.app[SERVICES].betting.page(
        ctx.session.user_id, payload.status, cursor, payload.limit
    )
    page = rows[: payload.limit]
    next_cursor = None
    if len(rows) > payload.limit:
        # Full microsecond precision: a millisecond cursor could skip bets placed in the same ms.
        next_cursor = encode_cursor(page[-1].placed_at.isoformat(), page[-1].id)
    return {"bets": [bet_view(row) for row in page], "nextCursor": next_cursor}


async def sync_open_bets(ctx: EventContext) -> dict[str, Any]:
    rows = await ctx.app[SERVICES].betting.open_bets(ctx.session.user_id)
    return {"openBets": [bet_view(row) for row in rows]}


def register(router: EventRouter) -> None:
    router.add(
        "bet:place", BetPlace, handle_bet_place, limit_scope="bets", repeat=repeat_of_bet_place
    )
    router.add("bets:list", BetsList, handle_bets_list)
    router.add_sync_part(sync_open_bets)
