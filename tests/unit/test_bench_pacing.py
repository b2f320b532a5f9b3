"""The pacing comparison (bench/pacing.py) keeps the rules' promises on every pattern it prints:
no two writes of a market closer than the interval allows, never an older value after a newer
one, and the newest change always goes out in the end."""

from __future__ import annotations

import random

import pytest

from bench import pacing
from game.pacing import BEAT_LATENESS

INTERVAL_S = 0.25
RULES = {"beat": pacing.beat_rule, "first after": pacing.first_after_interval_rule(0.125)}


@pytest.mark.parametrize("pattern", pacing.PATTERNS, ids=lambda pattern: pattern.name)
@pytest.mark.parametrize("rule", list(RULES), ids=str)
def test_every_rule_paces_keeps_order_and_ends_on_the_newest_value(
    pattern: pacing.Pattern, rule: str
) -> None:
    arrivals = pattern.make(random.Random(3), 20)
    writes = RULES[rule](arrivals, INTERVAL_S)
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
