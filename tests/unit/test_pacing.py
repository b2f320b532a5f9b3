"""The pacing rule of odds pushes (game/pacing.py): at most one write per interval, busy markets
on a shared beat, a quiet market's first change at once."""

from __future__ import annotations

import math

import pytest

from game.pacing import BeatPacing

PACING = BeatPacing(0.25)


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
