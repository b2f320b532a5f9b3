"""The pacing rules of odds pushes (game/pacing.py): at most one write per interval, a quiet
market's first change at once; busy markets on a shared beat (`beat`), or their first change
after each interval at once (`first-change`)."""

from __future__ import annotations

import math

import pytest

from game.pacing import BeatPacing, FirstChangePacing, pacing

PACING = BeatPacing(0.25)
FIRST = FirstChangePacing(0.25)


def test_a_market_never_written_may_be_written_at_once() -> None:
    assert PACING.allowed_at(None) == -math.inf


def test_a_market_written_on_a_beat_waits_for_the_next_beat() -> None:
    assert PACING.allowed_at(100.25) == pytest.approx(100.5)


def test_a_market_written_between_beats_waits_a_whole_interval_then_for_a_beat() -> None:
    # Written at 100.30: not before 100.55, and then on the beat at 100.75.
    assert PACING.allowed_at(100.30) == pytest.approx(100.75)
    assert PACING.allowed_at(100.30) - 100.30 >= 0.25


def test_a_write_on_its_beat_or_a_little_late_keeps_the_market_on_the_beat() -> None:
    assert PACING.slot_of_write(100.5, 100.5) == 100.5
    assert PACING.slot_of_write(100.5, 100.52) == 100.5  # the flush ran 20 ms late


def test_a_write_long_after_its_beat_counts_from_its_own_time() -> None:
    # A quiet market's change, written when it came: the next write is an interval after it.
    assert PACING.slot_of_write(100.5, 101.13) == 101.13
    assert PACING.slot_of_write(-math.inf, 101.13) == 101.13


def test_consecutive_writes_are_never_closer_than_the_interval_less_the_lateness() -> None:
    slot: float | None = None
    written: list[float] = []
    now = 100.0
    while now < 103.0:  # a change every 10 ms, flushed up to 20 ms late
        allowed = PACING.allowed_at(slot)
        if now >= allowed:
            written.append(now)
            slot = PACING.slot_of_write(allowed, now)
            now += 0.02
        now += 0.01
    gaps = [later - earlier for earlier, later in zip(written, written[1:], strict=False)]
    assert len(written) >= 10
    assert min(gaps) >= 0.25 * (1 - 0.1) - 1e-9


def test_without_an_interval_every_change_may_go_out() -> None:
    unpaced = BeatPacing(0)
    assert unpaced.allowed_at(100.3) == 100.3


def test_the_setting_names_the_rule() -> None:
    assert isinstance(pacing("beat", 0.25), BeatPacing)
    assert isinstance(pacing("first-change", 0.25), FirstChangePacing)


def test_beat_values_are_due_on_the_beat_whenever_they_changed() -> None:
    assert PACING.due_at(100.30, 100.31) == pytest.approx(100.75)
    assert PACING.due_at(100.30, 100.70) == pytest.approx(100.75)


def test_first_change_a_market_never_written_is_due_at_once() -> None:
    assert FIRST.due_at(None, 100.0) == -math.inf


def test_first_change_a_change_after_the_interval_is_due_when_it_came() -> None:
    assert FIRST.due_at(100.30, 100.56) == 100.56  # no beat to wait for


def test_first_change_a_value_within_the_interval_goes_out_when_it_ends() -> None:
    # Written at 100.30, changed at 100.40, 40 ms after the change before: a newer change is
    # expected by 100.46, before the interval ends at 100.55; no reason to wait past it.
    assert FIRST.due_at(100.30, 100.40, 0.04) == pytest.approx(100.55)


def test_first_change_a_steady_market_waits_past_the_interval_for_its_next_change() -> None:
    # Changes every 100 ms, the latest at 100.50: the next is expected by 100.65 (1.5 gaps),
    # within half an interval past 100.55, so the held value waits for it until then.
    assert FIRST.due_at(100.30, 100.50, 0.1) == pytest.approx(100.65)


def test_first_change_a_value_no_change_is_expected_after_goes_out_when_the_interval_ends() -> None:
    # 300 ms since the change before: the next is not expected before 100.80 (past 100.675).
    assert FIRST.due_at(100.30, 100.50, 0.3) == pytest.approx(100.55)
    assert FIRST.due_at(100.30, 100.50) == pytest.approx(100.55)  # the market's first change


def test_first_change_writes_count_from_when_they_were_made() -> None:
    assert FIRST.slot_of_write(100.56, 100.57) == 100.57
    assert FIRST.due_at(FIRST.slot_of_write(100.56, 100.57), 100.80) >= 100.57 + 0.25
