"""Leaderboard period buckets of game.leaderboard and time formatting of game.clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from game.clock import iso_z, parse_iso
from game.leaderboard import Period, period_bounds, period_key, period_keys

TOKYO = timezone(timedelta(hours=9))
LOS_ANGELES = timezone(timedelta(hours=-8))


def test_all_time_has_one_bucket_and_no_bounds() -> None:
    at = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert period_key(Period.ALL, at) == "all"
    assert period_bounds(Period.ALL, at) is None


def test_day_bucket_is_the_utc_date() -> None:
    assert period_key(Period.DAY, datetime(2026, 11, 25, 23, 59, tzinfo=UTC)) == "2026-11-25"
    assert period_key(Period.DAY, datetime(2026, 11, 26, 0, 0, tzinfo=UTC)) == "2026-11-26"


def test_day_bucket_of_an_offset_time_is_its_utc_date() -> None:
    assert period_key(Period.DAY, datetime(2026, 11, 26, 8, 0, tzinfo=TOKYO)) == "2026-11-25"
    assert period_key(Period.DAY, datetime(2026, 11, 25, 16, 0, tzinfo=LOS_ANGELES)) == "2026-11-26"


def test_week_bucket_is_the_iso_week_in_utc() -> None:
    assert period_key(Period.WEEK, datetime(2026, 11, 25, tzinfo=UTC)) == "2026-W48"


def test_iso_week_across_the_year_boundary_keeps_the_week_year() -> None:
    # 2026-12-31 is a Thursday: ISO week 53 of 2026; 2027-01-01 (Friday) is in the same week.
    assert period_key(Period.WEEK, datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "2026-W53"
    assert period_key(Period.WEEK, datetime(2027, 1, 1, 0, 0, tzinfo=UTC)) == "2026-W53"
    assert period_key(Period.WEEK, datetime(2027, 1, 4, 0, 0, tzinfo=UTC)) == "2027-W01"


def test_iso_week_of_late_december_can_belong_to_the_next_year() -> None:
    # 2024-12-30 is a Monday of ISO week 1 of 2025
    assert period_key(Period.WEEK, datetime(2024, 12, 30, tzinfo=UTC)) == "2025-W01"


def test_week_changes_at_utc_monday_midnight_not_local_midnight() -> None:
    sunday_late_utc = datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC)
    monday_utc = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    assert period_key(Period.WEEK, sunday_late_utc) == "2026-W48"
    assert period_key(Period.WEEK, monday_utc) == "2026-W49"
    # Monday 08:00 in Tokyo is still Sunday in UTC
    assert period_key(Period.WEEK, datetime(2026, 11, 30, 8, 0, tzinfo=TOKYO)) == "2026-W48"


def test_day_bounds_are_utc_midnight_to_midnight() -> None:
    at = datetime(2026, 11, 25, 13, 0, tzinfo=TOKYO)  # 04:00 UTC
    assert period_bounds(Period.DAY, at) == (
        datetime(2026, 11, 25, tzinfo=UTC),
        datetime(2026, 11, 26, tzinfo=UTC),
    )


def test_week_bounds_run_monday_to_monday_across_the_year() -> None:
    assert period_bounds(Period.WEEK, datetime(2027, 1, 1, 12, tzinfo=UTC)) == (
        datetime(2026, 12, 28, tzinfo=UTC),
        datetime(2027, 1, 4, tzinfo=UTC),
    )


@pytest.mark.parametrize("period", [Period.DAY, Period.WEEK])
def test_pnl_at_a_bucket_end_belongs_to_the_next_bucket(period: Period) -> None:
    at = datetime(2026, 12, 31, 18, 30, tzinfo=UTC)
    bounds = period_bounds(period, at)
    assert bounds is not None
    start, end = bounds
    assert period_key(period, start) == period_key(period, at)
    assert period_key(period, end - timedelta(microseconds=1)) == period_key(period, at)
    assert period_key(period, end) != period_key(period, at)


def test_a_settlement_counts_toward_one_bucket_per_period() -> None:
    assert period_keys(datetime(2027, 1, 1, 0, 0, tzinfo=UTC)) == {
        Period.ALL: "all",
        Period.WEEK: "2026-W53",
        Period.DAY: "2027-01-01",
    }


def test_iso_z_is_utc_with_milliseconds_and_z() -> None:
    at = datetime(2026, 11, 25, 9, 30, 0, 123456, tzinfo=TOKYO)
    assert iso_z(at) == "2026-11-25T00:30:00.123Z"


def test_parse_iso_reads_z_and_offsets_as_utc() -> None:
    assert parse_iso("2026-11-25T00:30:00.123Z") == datetime(
        2026, 11, 25, 0, 30, 0, 123000, tzinfo=UTC
    )
    assert parse_iso("2026-11-25T09:30:00+09:00") == datetime(2026, 11, 25, 0, 30, tzinfo=UTC)
    assert parse_iso("2026-11-25T09:30:00+09:00").utcoffset() == timedelta(0)


def test_parse_iso_refuses_naive_text() -> None:
    with pytest.raises(ValueError, match="naive"):
        parse_iso("2026-11-25T00:30:00")


def test_iso_z_round_trips_through_parse_iso() -> None:
    at = datetime(2026, 11, 25, 0, 30, 0, 123000, tzinfo=UTC)
    assert parse_iso(iso_z(at)) == at
