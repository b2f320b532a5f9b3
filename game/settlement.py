"""What each bet gets when its market resolves, and the profit or loss that makes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from game.bets import BetStatus
from game.markets import Resolution, Side
from game.money import floor_cents

LedgerKind = Literal["bet_payout", "bet_refund"]

ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class BetOutcome:
    """A settled bet: its final status, what it is paid, and the ledger row that pays it (None: lost)."""

    status: BetStatus
    payout: Decimal
    ledger_kind: LedgerKind | None


def settle_bet(
    side: Side, amount: Decimal, potential_payout: Decimal, resolution: Resolution
) -> BetOutcome:
    """The outcome of one open bet under a final resolution.

    Winners get `potential_payout`, losers nothing; a split pays every bet half its
    potential payout (rounded down); a cancelled market refunds every stake.
    """
    if resolution is Resolution.CANCELLED:
        return BetOutcome(BetStatus.REFUNDED, amount, "bet_refund")
    if resolution is Resolution.SPLIT:
        return BetOutcome(BetStatus.SPLIT, floor_cents(potential_payout / 2), "bet_payout")
    if resolution.value == side.value:
        return BetOutcome(BetStatus.WON, potential_payout, "bet_payout")
    return BetOutcome(BetStatus.LOST, ZERO, None)


def realized_pnl(stake: Decimal, outcome: BetOutcome) -> Decimal:
    """Profit (positive) or loss (negative) of one settled bet: what it paid minus its stake."""
    return outcome.payout - stake
