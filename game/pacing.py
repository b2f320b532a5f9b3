"""When a market's odds may be written and pushed again (docs/architecture.md, "Pacing").

A market is written at most once per interval (ODDS_PUSH_MIN_INTERVAL_MS). A quiet market's
first change goes out at once. A change within the interval waits, and the latest value goes
out on the market's next beat: the first multiple of the interval on the clock at least one
interval after the last write. Busy markets therefore share beats, and a player watching several
gets their ticks in one write to the socket, not one each.

The price of sharing beats is the wait: a busy market's value is up to the gap between its
changes old when it goes out (at 10 changes a second, up to 100 ms). `python -m bench.pacing`
compares this rule with pushing the first change after each interval instead, on regular and
bursty changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

# Float slack when a slot plus an interval lands on a beat.
BEAT_EPSILON: Final = 1e-9
# A write this share of an interval after its beat still counts as on it (the flush that makes
# it may start late under load); two writes of a market are never closer than the rest.
BEAT_LATENESS: Final = 0.1


@dataclass(frozen=True, slots=True)
class BeatPacing:
    """The rule above for one interval, in seconds of a monotonic clock. A slot is the time a
    market's last write counts from: the beat it was due on, or when it was written if it was
    not waiting for a beat."""

    interval_s: float

    def allowed_at(self, slot: float | None) -> float:
        """The first time a market last written at `slot` may be written again."""
        if slot is None:
            return -math.inf
        if self.interval_s <= 0:
            return slot
        beats = math.ceil((slot + self.interval_s) / self.interval_s - BEAT_EPSILON)
        return beats * self.interval_s

    def slot_of_write(self, allowed: float, written_at: float) -> float:
        """The slot of a write made at `written_at` that was allowed from `allowed`: its beat if
        it is on one (a flush may run a little late), so the market stays on the beat, else the
        write's own time (a quiet market's first change)."""
        if written_at - allowed <= self.interval_s * BEAT_LATENESS:
            return allowed
        return written_at
