"""Daily reward eligibility of game.rewards: UTC days, next claim time, the cap."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from game.errors import ErrorCode, GameError
from game.rewards import check_reward, next_claim_at, reward_already_claimed, reward_day

NEW_YORK_WINTER = timezone(timedelta(hours=-5))
TOKYO = timezone(timedelta(hours=9))


def test_reward_day_is_the_utc_calendar_day() -> None:
    assert reward_day(datetime(2026, 11, 25, 0, 0, tzinfo=UTC)) == date(2026, 11, 25)
    assert reward_day(datetime(2026, 11, 25, 23, 59, 59, 999999, tzinfo=UTC)) == date(2026, 11, 25)


def test_evening_in_new_york_after_utc_midnight_is_the_next_reward_day() -> None:
    # 19:30 on the 25th in UTC-5 is 00:30 on the 26th UTC
    assert reward_day(datetime(2026, 11, 25, 19, 30, tzinfo=NEW_YORK_WINTER)) == date(2026, 11, 26)


def test_morning_in_tokyo_before_utc_midnight_is_the_previous_reward_day() -> None:
    # 08:59 on the 26th in UTC+9 is 23:59 on the 25th UTC
    assert reward_day(datetime(2026, 11, 26, 8, 59, tzinfo=TOKYO)) == date(2026, 11, 25)


def test_next_claim_is_the_next_utc_midnight() -> None:
    at = datetime(2026, 11, 25, 13, 45, tzinfo=UTC)
    assert next_claim_at(at) == datetime(2026, 11, 26, tzinfo=UTC)


def test_a_claim_exactly_at_midnight_waits_a_full_day() -> None:
    at = datetime(2026, 11, 26, tzinfo=UTC)
    assert next_claim_at(at) == datetime(2026, 11, 27, tzinfo=UTC)


def test_next_claim_from_an_offset_time_is_utc_midnight_in_utc() -> None:
    result = next_claim_at(datetime(2026, 12, 31, 20, 0, tzinfo=NEW_YORK_WINTER))
    assert result == datetime(2027, 1, 2, tzinfo=UTC)
    assert result.utcoffset() == timedelta(0)


def test_reward_already_claimed_says_when_to_come_back_in_iso_z() -> None:
    error = reward_already_claimed(datetime(2026, 11, 25, 13, 45, tzinfo=UTC))
    assert error.code is ErrorCode.REWARD_ALREADY_CLAIMED
    assert error.details["nextClaimAt"] == "2026-11-26T00:00:00.000Z"


def test_reward_that_reaches_exactly_the_cap_is_allowed() -> None:
    check_reward(Decimal("999900.00"), Decimal("100"), Decimal("0"), Decimal("1000000"))


def test_reward_that_would_exceed_the_cap_by_a_cent_is_refused() -> None:
    with pytest.raises(GameError) as exc:
        check_reward(Decimal("999900.01"), Decimal("100"), Decimal("0"), Decimal("1000000"))
    assert exc.value.code is ErrorCode.BALANCE_CAP_EXCEEDED


def test_what_open_bets_could_pay_counts_against_the_cap() -> None:
    check_reward(Decimal("1000.00"), Decimal("100"), Decimal("998900.00"), Decimal("1000000"))
    with pytest.raises(GameError) as exc:
        check_reward(Decimal("1000.00"), Decimal("100"), Decimal("998900.01"), Decimal("1000000"))
    assert exc.value.code is ErrorCode.BALANCE_CAP_EXCEEDED


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        reward_day(datetime(2026, 11, 25))  # noqa: DTZ001
