"""Exact credit and odds arithmetic. Credits have 2 decimals, odds 4; never floats."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation

CENT = Decimal("0.01")
ODDS_STEP = Decimal("0.0001")
MIN_ODDS = Decimal("0.0001")
MAX_ODDS = Decimal("0.9999")


def has_at_most_decimals(value: Decimal, places: int) -> bool:
    try:
        return value == value.quantize(Decimal(1).scaleb(-places))
    except InvalidOperation:
        return False


def floor_cents(value: Decimal) -> Decimal:
    """Round down to the cent: the house never pays a fraction it does not owe."""
    return value.quantize(CENT, rounding=ROUND_DOWN)


def clamp_odds(value: Decimal) -> Decimal:
    """An implied probability as stored: 4 decimals within [0.0001, 0.9999]."""
    rounded = value.quantize(ODDS_STEP, rounding=ROUND_HALF_EVEN)
    return min(MAX_ODDS, max(MIN_ODDS, rounded))
