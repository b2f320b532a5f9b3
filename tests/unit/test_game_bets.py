"""Bet rules of game.bets: the stake check the server runs, and the oracle the database is held to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from game.bets import (
    BetStatus,
    check_fresh,
    check_funds_and_cap,
    check_market_open,
    check_odds,
    odds_are_stale,
    potential_payout,
    validate_amount,
)
from game.errors import ErrorCode, GameError
from game.markets import MarketStatus
from game.money import CENT, floor_cents
from game.rules import GameRules

RULES = GameRules(
    min_bet_amount=Decimal("10"),
    max_bet_amount=Decimal("10000"),
    starting_credits=Decimal("1000"),
    daily_reward_credits=Decimal("100"),
    max_balance=Decimal("1000000"),
    odds_max_age_s=120.0,
)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def D(text: str) -> Decimal:
    return Decimal(text)


# --- amount ---------------------------------------------------------------


@pytest.mark.parametrize("amount", ["10", "10.00", "55.5", "123.45", "10000", "9999.99"])
def test_amount_within_range_with_two_decimals_is_accepted(amount: str) -> None:
    assert validate_amount(D(amount), RULES) == D(amount)
    assert validate_amount(D(amount), RULES).as_tuple().exponent == -2


@pytest.mark.parametrize("amount", ["9.99", "0", "-10", "10000.01", "20000"])
def test_amount_outside_range_is_refused_naming_the_range(amount: str) -> None:
    with pytest.raises(GameError) as exc:
        validate_amount(D(amount), RULES)
    assert exc.value.code is ErrorCode.BET_AMOUNT_OUT_OF_RANGE
    assert "10.00" in exc.value.message
    assert "10000.00" in exc.value.message


@pytest.mark.parametrize("amount", ["10.001", "50.125", "NaN", "Infinity", "1E+40"])
def test_amount_with_more_than_two_decimals_or_not_finite_is_refused(amount: str) -> None:
    with pytest.raises(GameError) as exc:
        validate_amount(D(amount), RULES)
    assert exc.value.code is ErrorCode.BET_AMOUNT_OUT_OF_RANGE


def test_rules_refuse_float_credit_values() -> None:
    with pytest.raises(TypeError):
        GameRules(min_bet_amount=10.0)  # type: ignore[arg-type]  # the point of the test


# --- payout ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "odds", "payout"),
    [
        ("100", "0.3", "333.33"),
        ("10", "0.9999", "10.00"),
        ("100", "0.5", "200.00"),
        ("10", "0.0001", "100000.00"),
        ("66.66", "0.6667", "99.98"),
        ("10000", "0.0001", "100000000.00"),
    ],
)
def test_potential_payout_is_amount_over_odds_rounded_down_to_the_cent(
    amount: str, odds: str, payout: str
) -> None:
    result = potential_payout(D(amount), D(odds))
    assert result == D(payout)
    assert result.as_tuple().exponent == -2


@pytest.mark.parametrize("odds", ["0", "1", "0.00009", "1.5", "-0.5"])
def test_potential_payout_refuses_odds_outside_the_clamp(odds: str) -> None:
    with pytest.raises(ValueError, match="odds"):
        potential_payout(D("100"), D(odds))


amounts = st.decimals(min_value=D("10"), max_value=D("10000"), places=2)
odds_values = st.decimals(min_value=D("0.0001"), max_value=D("0.9999"), places=4)


@given(amount=amounts, odds=odds_values)
def test_payout_never_exceeds_and_never_shorts_the_fair_value_by_a_cent(
    amount: Decimal, odds: Decimal
) -> None:
    payout = potential_payout(amount, odds)
    assert payout * odds <= amount < (payout + CENT) * odds
    split = floor_cents(payout / 2)
    assert split * 2 <= payout


# --- odds tolerance -------------------------------------------------------


def test_equal_odds_are_accepted() -> None:
    check_odds(D("0.5000"), D("0.5000"), D("0"))


def test_better_odds_than_expected_are_accepted() -> None:
    check_odds(D("0.4000"), D("0.5000"), D("0"))


def test_worse_odds_within_slippage_are_accepted() -> None:
    check_odds(D("0.5200"), D("0.5000"), D("0.02"))


def test_missing_expected_odds_accepts_any_current_odds() -> None:
    check_odds(D("0.9999"), None, D("0"))


def test_worse_odds_beyond_slippage_are_refused_with_current_odds() -> None:
    with pytest.raises(GameError) as exc:
        check_odds(D("0.5201"), D("0.5000"), D("0.02"))
    assert exc.value.code is ErrorCode.ODDS_CHANGED
    assert exc.value.details["currentOdds"] == D("0.5201")
    assert isinstance(exc.value.details["currentOdds"], Decimal)


# --- staleness ------------------------------------------------------------


def test_odds_exactly_at_max_age_are_fresh() -> None:
    check_fresh(NOW - timedelta(seconds=120), NOW, RULES)


def test_staleness_has_one_boundary_for_bets_and_the_feed_status() -> None:
    assert not odds_are_stale(NOW - timedelta(seconds=120), NOW, 120)
    assert odds_are_stale(NOW - timedelta(seconds=120, microseconds=1), NOW, 120)
    plus_two = timezone(timedelta(hours=2))
    assert not odds_are_stale(datetime(2026, 11, 25, 13, 59, tzinfo=plus_two), NOW, 120)


def test_odds_older_than_max_age_are_stale() -> None:
    with pytest.raises(GameError) as exc:
        check_fresh(NOW - timedelta(seconds=120, milliseconds=1), NOW, RULES)
    assert exc.value.code is ErrorCode.ODDS_STALE


def test_odds_never_read_are_stale() -> None:
    with pytest.raises(GameError) as exc:
        check_fresh(None, NOW, RULES)
    assert exc.value.code is ErrorCode.ODDS_STALE


def test_staleness_compares_moments_not_wall_clocks_across_offsets() -> None:
    plus_two = timezone(timedelta(hours=2))
    check_fresh(datetime(2026, 11, 25, 13, 59, tzinfo=plus_two), NOW, RULES)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        check_fresh(datetime(2026, 11, 25, 12, 0), NOW, RULES)  # noqa: DTZ001


# --- market open ----------------------------------------------------------


def test_open_market_before_its_end_accepting_orders_takes_bets() -> None:
    check_market_open(MarketStatus.OPEN, NOW + timedelta(seconds=1), True, NOW)
    check_market_open(MarketStatus.OPEN, None, True, NOW)


@pytest.mark.parametrize(
    "status", [MarketStatus.CLOSED, MarketStatus.RESOLVED, MarketStatus.CANCELLED]
)
def test_market_not_open_is_closed_for_bets_naming_its_status(status: MarketStatus) -> None:
    with pytest.raises(GameError) as exc:
        check_market_open(status, None, True, NOW)
    assert exc.value.code is ErrorCode.MARKET_CLOSED
    assert status.value in exc.value.message


def test_market_at_its_end_time_is_closed_for_bets() -> None:
    with pytest.raises(GameError) as exc:
        check_market_open(MarketStatus.OPEN, NOW, True, NOW)
    assert exc.value.code is ErrorCode.MARKET_CLOSED
    assert "end time" in exc.value.message


def test_market_not_accepting_orders_upstream_is_closed_for_bets() -> None:
    with pytest.raises(GameError) as exc:
        check_market_open(MarketStatus.OPEN, NOW + timedelta(days=1), False, NOW)
    assert exc.value.code is ErrorCode.MARKET_CLOSED
    assert "accepting orders" in exc.value.message


# --- funds and cap --------------------------------------------------------

CAP = D("1000000")


def test_stake_equal_to_balance_is_accepted() -> None:
    check_funds_and_cap(D("50.00"), D("50.00"), D("100.00"), D("0"), CAP)


def test_stake_above_balance_is_refused_with_the_balance() -> None:
    with pytest.raises(GameError) as exc:
        check_funds_and_cap(D("20.00"), D("50.00"), D("100.00"), D("0"), CAP)
    assert exc.value.code is ErrorCode.INSUFFICIENT_CREDITS
    assert exc.value.details["balance"] == D("20.00")
    assert "20.00" in exc.value.message


def test_bet_that_could_reach_exactly_the_cap_is_accepted() -> None:
    # after stake 900000 + open 50000 + this payout 50000 = 1000000
    check_funds_and_cap(D("900100.00"), D("100.00"), D("50000.00"), D("50000.00"), CAP)


def test_bet_that_could_exceed_the_cap_by_one_cent_is_refused() -> None:
    with pytest.raises(GameError) as exc:
        check_funds_and_cap(D("900100.00"), D("100.00"), D("50000.01"), D("50000.00"), CAP)
    assert exc.value.code is ErrorCode.BALANCE_CAP_EXCEEDED


def test_cap_counts_the_payouts_of_other_open_bets() -> None:
    check_funds_and_cap(D("1000.00"), D("100.00"), D("200.00"), D("0"), D("1100.00"))
    with pytest.raises(GameError) as exc:
        check_funds_and_cap(D("1000.00"), D("100.00"), D("200.00"), D("0.01"), D("1100.00"))
    assert exc.value.code is ErrorCode.BALANCE_CAP_EXCEEDED


def test_bet_statuses_are_the_protocol_strings() -> None:
    assert [s.value for s in BetStatus] == ["open", "won", "lost", "split", "refunded"]
