"""Latency bookkeeping of a load run: arrival schedules, HdrHistograms, error counts, merging.

Open-loop latency is measured from each request's *scheduled* send time, not from when it was
actually sent: if the server (or the client's own loop) stalls, requests that should have gone out
during the stall carry the stall in their latency, so a stalled server cannot hide its tail
(coordinated omission). Everything here is pure bookkeeping, unit-tested without sockets.
"""

from __future__ import annotations

import base64
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from hdrh.histogram import HdrHistogram

# Microseconds, 1 µs .. 10 min, 3 significant digits.
LOWEST_US: Final = 1
HIGHEST_US: Final = 600_000_000
SIGNIFICANT: Final = 3
PERCENTILES: Final = (50.0, 95.0, 99.0, 99.9)
# A bet refused MARKET_CLOSED whose market's close the client then heard of by push: the bet was
# in flight when its market closed (the load client counts these under this name).
MARKET_CLOSED_RACED: Final = "MARKET_CLOSED:raced"
# Refusals the game gives by design under a random mix, and bets that raced their market's close;
# reported, but not counted as failures.
EXPECTED_REFUSALS: Final = frozenset({"REWARD_ALREADY_CLAIMED", MARKET_CLOSED_RACED})


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT)


def record_seconds(histogram: HdrHistogram, seconds: float) -> None:
    """Record a duration; clamped into the trackable range (a negative clock skew becomes 1 µs)."""
    histogram.record_value(min(HIGHEST_US, max(LOWEST_US, round(seconds * 1e6))))


def encode(histogram: HdrHistogram) -> str:
    return base64.b64encode(histogram.encode()).decode() if histogram.get_total_count() else ""


def decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(base64.b64decode(text)) if text else new_histogram()


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram holding every value of the encoded ones (one per client process)."""
    total = new_histogram()
    for text in encoded:
        if text:
            total.add(decode(text))
    return total


def summarize(histogram: HdrHistogram) -> dict[str, Any]:
    """Count, mean, percentiles and max in milliseconds."""
    count = histogram.get_total_count()
    if not count:
        return {"count": 0}
    summary: dict[str, Any] = {
        "count": count,
        "meanMs": round(histogram.get_mean_value() / 1000, 3),
    }
    for percentile in PERCENTILES:
        key = f"p{percentile:g}".replace(".", "")
        summary[key + "Ms"] = round(histogram.get_value_at_percentile(percentile) / 1000, 3)
    summary["maxMs"] = round(histogram.get_max_value() / 1000, 3)
    return summary


def arrival_offsets(
    rate: float, duration_s: float, *, poisson: bool = False, rng: random.Random | None = None
) -> Iterator[float]:
    """Send times (seconds from the start) of an open-loop schedule at `rate` per second.

    Fixed: evenly spaced, i / rate. Poisson: exponential gaps with mean 1 / rate. The schedule
    never depends on when answers come back; that is what makes the load open-loop.
    """
    if rate <= 0:
        return
    rng = rng or random.Random()
    at = 0.0
    index = 0
    while True:
        at = at + rng.expovariate(rate) if poisson else index / rate
        if at >= duration_s:
            return
        yield at
        index += 1


@dataclass
class LatencyBook:
    """Per-process counters of one run; `snapshot()` ships them to the parent, `merge_books` adds them up."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    interval: HdrHistogram = field(default_factory=new_histogram)
    by_operation: dict[str, HdrHistogram] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    answered: int = 0
    succeeded: int = 0

    def sent_one(self) -> None:
        self.sent += 1

    def answered_one(
        self, operation: str, scheduled: float, answered_at: float, error_code: str | None
    ) -> None:
        """An ack (or a timeout) for a request scheduled at `scheduled` (same clock as `answered_at`)."""
        seconds = answered_at - scheduled
        record_seconds(self.histogram, seconds)
        record_seconds(self.interval, seconds)
        if operation not in self.by_operation:
            self.by_operation[operation] = new_histogram()
        record_seconds(self.by_operation[operation], seconds)
        self.answered += 1
        if error_code is None:
            self.succeeded += 1
        else:
            self.errors[error_code] += 1

    def take_interval(self) -> HdrHistogram:
        """The latencies recorded since the last call (for the live line and latency over time)."""
        interval, self.interval = self.interval, new_histogram()
        return interval

    def snapshot(self) -> dict[str, Any]:
        return {
            "histogram": encode(self.histogram),
            "byOperation": {name: encode(hist) for name, hist in self.by_operation.items()},
            "errors": dict(self.errors),
            "sent": self.sent,
            "answered": self.answered,
            "succeeded": self.succeeded,
        }


def merge_books(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Add up the final snapshots of every client process: counts summed, histograms merged."""
    snapshots = list(snapshots)
    errors: Counter[str] = Counter()
    operations: dict[str, list[str]] = {}
    for snapshot in snapshots:
        errors.update(snapshot["errors"])
        for name, text in snapshot["byOperation"].items():
            operations.setdefault(name, []).append(text)
    unexpected = sum(count for code, count in errors.items() if code not in EXPECTED_REFUSALS)
    return {
        "sent": sum(snapshot["sent"] for snapshot in snapshots),
        "answered": sum(snapshot["answered"] for snapshot in snapshots),
        "succeeded": sum(snapshot["succeeded"] for snapshot in snapshots),
        "errors": dict(errors.most_common()),
        "unexpectedErrors": unexpected,
        "latency": summarize(merge(snapshot["histogram"] for snapshot in snapshots)),
        "byOperation": {
            name: summarize(merge(texts)) for name, texts in sorted(operations.items())
        },
    }
