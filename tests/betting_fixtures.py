"""Helpers for betting tests: markets inserted straight into the database (the feed is not needed),
players created without the REST layer, and bets placed with the server's default rules."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from game.markets import Side
from game.rules import GameRules
from storage import accounts, bets

RULES = GameRules()
_sources = itertools.count()

INSERT_MARKET = """
INSERT INTO markets (source_id, question, this_label, that_label, this_token_id, that_token_id,
                     this_odds, that_odds, odds_updated_at, status, accepting_orders, ends_at)
VALUES ($1, $2, 'Yes', 'No', $1 || '-yes', $1 || '-no', $3, $4, $5, $6, $7, $8)
RETURNING id
"""


async def insert_market(
    db: asyncpg.Pool,
    *,
    this_odds: str = "0.4000",
    that_odds: str = "0.6000",
    status: str = "open",
    accepting_orders: bool = True,
    odds_age_s: float = 0,
    ends_in_s: float | None = 3600,
    question: str = "Will it happen?",
) -> uuid.UUID:
    now = datetime.now(UTC)
    ends_at = None if ends_in_s is None else now + timedelta(seconds=ends_in_s)
    market_id = await db.fetchval(
        INSERT_MARKET,
        f"0xtest{next(_sources)}",
        question,
        Decimal(this_odds),
        Decimal(that_odds),
        now - timedelta(seconds=odds_age_s),
        status,
        accepting_orders,
        ends_at,
    )
    assert isinstance(market_id, uuid.UUID)
    return market_id


async def make_user(db: asyncpg.Pool, name: str, credits: str = "1000") -> uuid.UUID:
    user = await accounts.create_user(db, name, "hash", Decimal(credits))
    assert isinstance(user.id, uuid.UUID)
    return user.id


async def bet(
    db: asyncpg.Pool,
    user_id: uuid.UUID,
    market_id: uuid.UUID,
    side: str = "this",
    amount: str = "100",
    *,
    client_bet_id: str | None = None,
    expected_odds: str | None = None,
    max_slippage: str = "0",
    rules: GameRules = RULES,
) -> bets.PlacedBet:
    return await bets.place_bet(
        db,
        user_id=user_id,
        market_id=market_id,
        client_bet_id=client_bet_id or uuid.uuid4().hex,
        side=Side(side),
        amount=Decimal(amount),
        expected_odds=None if expected_odds is None else Decimal(expected_odds),
        max_slippage=Decimal(max_slippage),
        rules=rules,
    )


async def balance_of(db: asyncpg.Pool, user_id: uuid.UUID) -> Decimal:
    value = await db.fetchval("SELECT balance FROM users WHERE id = $1", user_id)
    assert isinstance(value, Decimal)
    return value
