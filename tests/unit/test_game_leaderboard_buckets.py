"""Bucket ids read back into periods and bounds, and how long finished buckets are kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from game.leaderboard import Period, bucket_expires_at, parse_period_key, period_bounds, period_key


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 11, 25, 13, 5, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    ],
)
@pytest.mark.parametrize("period", list(Period))
def test_a_bucket_id_reads_back_as_its_period_and_bounds(period: Period, at: datetime) -> None:
    assert parse_period_key(period_key(period, at)) == (period, period_bounds(period, at))


def test_iso_week_53_starts_on_its_monday() -> None:
    assert parse_period_key("2026-W53") == (
        Period.WEEK,
        (datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC)),
    )


@pytest.mark.parametrize(
    "key",
    ["", "versions", "throttle:all", "2026-11-25:versions", "2026-W4", "2026-13-01", "usernames"],
)
def test_anything_else_is_not_a_bucket(key: str) -> None:
    with pytest.raises(ValueError, match="."):
        parse_period_key(key)


def test_finished_days_and_weeks_are_kept_for_a_while_and_all_time_forever() -> None:
    assert bucket_expires_at("all") is None
    assert bucket_expires_at("2026-11-25") == datetime(2026, 11, 26, tzinfo=UTC) + timedelta(days=7)
    assert bucket_expires_at("2026-W48") == datetime(2026, 11, 30, tzinfo=UTC) + timedelta(days=28)
