"""The pacing comparison (bench/pacing.py) keeps the rules' promises on every pattern it prints:
no two writes of a market closer than the interval allows, never an older value after a newer
one, and the newest change always goes out in the end."""

from __future__ import annotations

import random

import pytest

from bench import pacing
from game.pacing import BEAT_LATENESS, PacingName

INTERVAL_S = 0.25
RULES: tuple[PacingName, ...] = ("beat", "first-change")


@pytest.mark.parametrize("pattern", pacing.PATTERNS, ids=lambda pattern: pattern.name)
@pytest.mark.parametrize("rule", RULES, ids=str)
def test_every_rule_paces_keeps_order_and_ends_on_the_newest_value(
    pattern: pacing.Pattern, rule: PacingName
) -> None:
    arrivals = pattern.make(random.Random(3), 20)
    writes = pacing.paced_writes(pacing.pacing(rule, INTERVAL_S), arrivals)
    times = [at for at, _ in writes]
    values = [index for _, index in writes]
    assert (
        min(b - a for a, b in zip(times, times[1:], strict=False))
        >= INTERVAL_S * (1 - BEAT_LATENESS) - 1e-9
    )
    assert values == sorted(set(values))  # each value once, never an older after a newer
    assert values[-1] == len(arrivals) - 1
    assert all(at >= arrivals[index] for at, index in writes)


def test_the_printed_table_has_a_row_per_pattern_and_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert pacing.main(["--seconds", "5", "--markets", "10"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(pacing.PATTERNS) * 2  # the header and a row each


def test_on_regular_changes_the_beat_holds_values_and_first_change_does_not() -> None:
    arrivals = pacing.regular(10).make(random.Random(3), 20)
    beat = pacing.paced_writes(pacing.pacing("beat", INTERVAL_S), arrivals)
    first = pacing.paced_writes(pacing.pacing("first-change", INTERVAL_S), arrivals)
    beat_waits = [at - arrivals[index] for at, index in beat[1:]]
    first_waits = [at - arrivals[index] for at, index in first[:-1]]
    assert max(beat_waits) > 0.05  # busy: values wait for the beat, up to the gap between changes
    assert max(first_waits) == 0  # each written as it came (but the last, held to the end)
    assert all(at * 4 == pytest.approx(round(at * 4)) for at, _ in beat[1:])  # on beats
