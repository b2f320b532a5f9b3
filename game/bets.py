"""Bet validation and payout: every check a bet must pass before the stake is debited.

The stake range (`validate_amount`) is checked here, before a bet is queued. Every other rule
executes in the database, under the market and user locks (`place_bets`, storage/migrations/0004);
the functions below state those rules in Python as the oracle of a parity test that runs both on
the same cases (tests/integration/test_bet_rules_parity.py), and `odds_are_stale` is the one
definition of staleness outside a bet (the feed's status report).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import msgspec

from game.clock import ensure_utc
from game.errors import (
    BalanceCapExceeded,
    BetAmountOutOfRange,
    InsufficientCredits,
    MarketClosed,
    OddsChanged,
    OddsStale,
)
from game.markets import MarketStatus, Side
from game.money import MAX_ODDS, MIN_ODDS, floor_cents, has_at_most_decimals
from game.rules import GameRules


class BetStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"
    SPLIT = "split"
    REFUNDED = "refunded"


def validate_amount(amount: Decimal, rules: GameRules) -> Decimal:
    """The stake as 2-decimal credits, or BET_AMOUNT_OUT_OF_RANGE naming the allowed range."""
    in_range = (
        amount.is_finite()
        and has_at_most_decimals(amount, 2)
        and rules.min_bet_amount <= amount <= rules.max_bet_amount
    )
    if not in_range:
        raise BetAmountOutOfRange(rules.min_bet_amount, rules.max_bet_amount)
    return floor_cents(amount)


def potential_payout(amount: Decimal, odds: Decimal) -> Decimal:
    """What a winning bet pays: amount / odds, rounded down to the cent."""
    if not MIN_ODDS <= odds <= MAX_ODDS:
        raise ValueError(f"odds {odds} outside [{MIN_ODDS}, {MAX_ODDS}]")
    return floor_cents(amount / odds)


def check_odds(current: Decimal, expected: Decimal | None, max_slippage: Decimal) -> None:
    """Refuse (ODDS_CHANGED) odds worse than the client expected; better odds always pass.

    Odds are implied probabilities, so higher odds mean a smaller payout: worse.
    """
    if expected is None:
        return
    if current > expected + max_slippage:
        raise OddsChanged(current, expected + max_slippage)


def odds_are_stale(odds_updated_at: datetime, now: datetime, max_age_s: float) -> bool:
    """Odds older than `max_age_s`; exactly `max_age_s` old is still fresh."""
    return (ensure_utc(now) - ensure_utc(odds_updated_at)).total_seconds() > max_age_s


def check_fresh(odds_updated_at: datetime | None, now: datetime, rules: GameRules) -> None:
    """Refuse (ODDS_STALE) odds never read or older than `odds_max_age_s`."""
    if odds_updated_at is None:
        raise OddsStale(None, rules.odds_max_age_s)
    if odds_are_stale(odds_updated_at, now, rules.odds_max_age_s):
        age_s = (ensure_utc(now) - ensure_utc(odds_updated_at)).total_seconds()
        raise OddsStale(f"{age_s:.0f}", rules.odds_max_age_s)


def check_market_open(
    status: MarketStatus, ends_at: datetime | None, accepting_orders: bool, now: datetime
) -> None:
    """Refuse (MARKET_CLOSED) a market that is not open, has ended, or upstream stopped taking orders.

    A market whose end time is exactly `now` has ended.
    """
    if status is not MarketStatus.OPEN:
        raise MarketClosed(f"market is {status.value}")
    if ends_at is not None and ensure_utc(now) >= ensure_utc(ends_at):
        raise MarketClosed("market is past its end time")
    if not accepting_orders:
        raise MarketClosed("market is not accepting orders upstream")


def check_funds_and_cap(
    balance: Decimal,
    amount: Decimal,
    payout: Decimal,
    open_potential_payout: Decimal,
    max_balance: Decimal,
) -> None:
    """Refuse a stake the balance cannot cover, or a bet whose win could breach the cap.

    The cap rule: balance after the stake, plus the potential payouts of all open
    bets (this one included), must not exceed `max_balance`; so no settlement can
    ever push a balance above it. Exactly at the cap is allowed.
    """
    if balance < amount:
        raise InsufficientCredits(balance, amount)
    worst_case = (balance - amount) + open_potential_payout + payout
    if worst_case > max_balance:
        raise BalanceCapExceeded.for_bet(worst_case, max_balance)


class BetRequest(msgspec.Struct, frozen=True):
    """One bet as asked for, its amount already validated (game.bets.validate_amount)."""

    user_id: uuid.UUID
    market_id: uuid.UUID
    client_bet_id: str
    side: Side
    amount: Decimal
    expected_odds: Decimal | None
    max_slippage: Decimal

    def with_amount(self, amount: Decimal) -> BetRequest:
        return msgspec.structs.replace(self, amount=amount)

    def fields(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)
