"""Per-bet settlement outcomes and realized PnL of game.settlement."""

from __future__ import annotations

from decimal import Decimal

import pytest

from game.bets import BetStatus
from game.markets import Resolution, Side
from game.settlement import BetOutcome, realized_pnl, settle_bet

AMOUNT = Decimal("100.00")
PAYOUT = Decimal("333.33")


@pytest.mark.parametrize(
    ("side", "resolution"), [(Side.THIS, Resolution.THIS), (Side.THAT, Resolution.THAT)]
)
def test_winning_bet_gets_its_potential_payout(side: Side, resolution: Resolution) -> None:
    outcome = settle_bet(side, AMOUNT, PAYOUT, resolution)
    assert outcome == BetOutcome(BetStatus.WON, PAYOUT, "bet_payout")


@pytest.mark.parametrize(
    ("side", "resolution"), [(Side.THIS, Resolution.THAT), (Side.THAT, Resolution.THIS)]
)
def test_losing_bet_gets_nothing_and_no_ledger_row(side: Side, resolution: Resolution) -> None:
    outcome = settle_bet(side, AMOUNT, PAYOUT, resolution)
    assert outcome.status is BetStatus.LOST
    assert outcome.payout == Decimal("0")
    assert outcome.ledger_kind is None


@pytest.mark.parametrize("side", list(Side))
def test_split_resolution_pays_half_of_potential_payout(side: Side) -> None:
    outcome = settle_bet(side, AMOUNT, PAYOUT, Resolution.SPLIT)
    assert outcome == BetOutcome(BetStatus.SPLIT, Decimal("166.66"), "bet_payout")


def test_split_of_an_even_payout_is_exact() -> None:
    assert settle_bet(Side.THIS, AMOUNT, Decimal("200.00"), Resolution.SPLIT).payout == Decimal(
        "100.00"
    )


@pytest.mark.parametrize("side", list(Side))
def test_cancelled_market_refunds_the_stake(side: Side) -> None:
    outcome = settle_bet(side, AMOUNT, PAYOUT, Resolution.CANCELLED)
    assert outcome == BetOutcome(BetStatus.REFUNDED, AMOUNT, "bet_refund")


def test_pnl_of_a_win_is_payout_minus_stake() -> None:
    outcome = settle_bet(Side.THIS, AMOUNT, PAYOUT, Resolution.THIS)
    assert realized_pnl(AMOUNT, outcome) == Decimal("233.33")


def test_pnl_of_a_loss_is_minus_the_stake() -> None:
    outcome = settle_bet(Side.THIS, AMOUNT, PAYOUT, Resolution.THAT)
    assert realized_pnl(AMOUNT, outcome) == Decimal("-100.00")


def test_pnl_of_a_refund_is_zero() -> None:
    outcome = settle_bet(Side.THAT, AMOUNT, PAYOUT, Resolution.CANCELLED)
    assert realized_pnl(AMOUNT, outcome) == 0


def test_pnl_of_a_split_can_be_negative() -> None:
    # odds 0.9 -> payout 111.11, split 55.55: a loss of 44.45
    outcome = settle_bet(Side.THIS, AMOUNT, Decimal("111.11"), Resolution.SPLIT)
    assert realized_pnl(AMOUNT, outcome) == Decimal("-44.45")
