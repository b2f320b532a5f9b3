"""Betting events: `bet:place`, `bets:list`, and the player's open bets in `sync`."""

from __future__ import annotations

from typing import Any

from game.bets import validate_amount
from game.errors import GameError
from game.markets import Side
from server import appkeys, metrics
from server.events.account import SYNC_PARTS
from server.rooms import emit_balance
from server.router import EventContext, router
from server.schemas import BetPlace, BetsList
from server.views import bet_view, decode_time_id_cursor, encode_cursor
from storage import bets
from storage.bets import BetRequest


@router.event("bet:place", BetPlace, limit_scope="bets")
async def handle_bet_place(ctx: EventContext, payload: BetPlace) -> dict[str, Any]:
    rules = ctx.app[appkeys.RULES]
    request = BetRequest(
        user_id=ctx.session.user_id,
        market_id=payload.marketId,
        client_bet_id=payload.clientBetId,
        side=Side(payload.side),
        amount=payload.amount,
        expected_odds=payload.expectedOdds,
        max_slippage=payload.maxSlippage,
    )
    try:
        stake = validate_amount(payload.amount, rules)
    except GameError:
        # The slow path knows whether this is a repeat of a placed bet (answered whatever its
        # payload) or a refusal.
        placed = await bets.place_bet(ctx.app[appkeys.DB_POOL], rules=rules, **request.fields())
    else:
        placed = await ctx.app[appkeys.BET_BATCHER].place(request.with_amount(stake))
    if placed.created:
        # Only a new bet moved the balance; a repeat of its clientBetId changed nothing.
        metrics.BETS_PLACED.inc()
        emit_balance(
            ctx.app[appkeys.PUSHES],
            ctx.session.user_id,
            placed.balance,
            "bet",
            skip_sid=ctx.sid,
        )
    return {"bet": bet_view(placed.bet), "balance": placed.balance}


@router.event("bets:list", BetsList)
async def handle_bets_list(ctx: EventContext, payload: BetsList) -> dict[str, Any]:
    cursor = None if payload.cursor is None else decode_time_id_cursor(payload.cursor)
    rows = await bets.list_bets(
        ctx.app[appkeys.DB_POOL], ctx.session.user_id, payload.status, cursor, payload.limit
    )
    page = rows[: payload.limit]
    next_cursor = None
    if len(rows) > payload.limit:
        # Full microsecond precision: a millisecond cursor could skip bets placed in the same ms.
        next_cursor = encode_cursor(page[-1]["placed_at"].isoformat(), page[-1]["id"])
    return {"bets": [bet_view(row) for row in page], "nextCursor": next_cursor}


async def sync_open_bets(ctx: EventContext) -> dict[str, Any]:
    rows = await bets.open_bets(ctx.app[appkeys.DB_POOL], ctx.session.user_id)
    return {"openBets": [bet_view(row) for row in rows]}


SYNC_PARTS.append(sync_open_bets)
