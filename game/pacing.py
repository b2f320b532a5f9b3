"""When a market's odds may be written and pushed again (docs/architecture.md, "Pacing").

A market is written at most once per interval (ODDS_PUSH_MIN_INTERVAL_MS), and a quiet market's
first change goes out at once under either rule (ODDS_PUSH_PACING):

- `beat`: a change within the interval waits, and the latest value goes out on the market's next
  beat: the first multiple of the interval on the clock at least one interval after the last
  write. Busy markets share beats, so a player watching several gets their ticks in one write to
  the socket, not one each. The price is the wait: a busy market's value is up to the gap
  between its changes old when it goes out (at 10 changes a second, up to 100 ms).
- `first-change`: once the interval has passed, the market's next change goes out at once. A
  value that came within the interval goes out when the interval ends, unless the market's
  changes come steadily enough that a newer one is due soon: then it waits for that one, until
  one and a half of the market's last gap between changes after it, at most half an interval
  past the interval. A value waits for no beat, but busy markets go out each at its own time,
  so a player watching several busy markets gets up to one write per market.

`python -m bench.pacing` compares them on regular, random and bursty changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, Protocol

# Float slack when a slot plus an interval lands on a beat.
BEAT_EPSILON: Final = 1e-9
# A write this share of an interval after its beat still counts as on it (the flush that makes
# it may start late under load); two writes of a market are never closer than the rest.
BEAT_LATENESS: Final = 0.1
# Under `first-change`, a held value waits for a newer change expected within HOLD_GAPS of the
# market's last gap between changes, at most HOLD_GRACE of an interval past the interval.
HOLD_GAPS: Final = 1.5
HOLD_GRACE: Final = 0.5

PacingName = Literal["beat", "first-change"]


class Pacing(Protocol):
    """A rule: when a market's latest value is written, and what its next write counts from."""

    def due_at(self, slot: float | None, changed_at: float, gap: float = math.inf) -> float:
        """When to write a market last written at `slot` (None: never) whose latest change came
        at `changed_at`, `gap` after the change before it (times in seconds of a monotonic
        clock; an infinite gap: no change before it)."""
        ...

    def slot_of_write(self, due: float, written_at: float) -> float:
        """What the next write of a market due at `due` and written at `written_at` counts from."""
        ...


def pacing(name: PacingName, interval_s: float) -> Pacing:
    """The rule ODDS_PUSH_PACING names, for an interval of `interval_s` seconds."""
    if name == "first-change":
        return FirstChangePacing(interval_s)
    return BeatPacing(interval_s)


@dataclass(frozen=True, slots=True)
class BeatPacing:
    """The `beat` rule above for one interval, in seconds of a monotonic clock. A slot is the time a
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

    def due_at(self, slot: float | None, changed_at: float, gap: float = math.inf) -> float:
        """The latest value goes out when the market may be written: at once, or on its beat."""
        return self.allowed_at(slot)

    def slot_of_write(self, allowed: float, written_at: float) -> float:
        """The slot of a write made at `written_at` that was allowed from `allowed`: its beat if
        it is on one (a flush may run a little late), so the market stays on the beat, else the
        write's own time (a quiet market's first change)."""
        if written_at - allowed <= self.interval_s * BEAT_LATENESS:
            return allowed
        return written_at


@dataclass(frozen=True, slots=True)
class FirstChangePacing:
    """The `first-change` rule above for one interval; a slot is when the last write was made."""

    interval_s: float

    def due_at(self, slot: float | None, changed_at: float, gap: float = math.inf) -> float:
        if slot is None:
            return -math.inf
        allowed = slot + self.interval_s
        if changed_at >= allowed:
            return changed_at  # a change after the interval: at once
        expected = changed_at + gap * HOLD_GAPS  # a newer change, if they come steadily
        if expected <= allowed + self.interval_s * HOLD_GRACE:
            return max(allowed, expected)
        return allowed

    def slot_of_write(self, due: float, written_at: float) -> float:
        return written_at
