"""The two pacing rules of odds pushes (game/pacing.py, ODDS_PUSH_PACING) compared on the same
changes: `beat`, the latest value on a beat all markets share, and `first-change`, the first
change after each interval.

    python -m bench.pacing [--interval-ms 250] [--seconds 60] [--markets 40]

No server runs: each market's changes arrive at the times of a pattern (regular, as
`bench.stream` sends them, or random arrivals with the same mean rate, or bursts), each rule
decides when a write goes out and with which value, and the script prints, per pattern and rule:

- writes per market per second;
- the wait of each pushed value, from its change to its write (what `bench.stream` calls "held
  for the beat"), p50 / p99;
- how long the shown value has not been the newest one, over time: mean / p99;
- socket writes per second for a player watching 5 markets: writes of the same flush go to a
  socket as one, and the feed flushes at most once per MIN_WRITE_GAP_S (20 ms).

The figures are arithmetic on the rules, the same on any machine; `bench.stream` measures what the
server adds to them.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from game.pacing import Pacing, PacingName, pacing
from server.mirror.stream import MIN_WRITE_GAP_S

WATCHED: Final = 5  # markets per watching socket, as in bench.stream
SAMPLE_S: Final = 0.001  # the staleness is read every millisecond
SAME_FLUSH_S: Final = MIN_WRITE_GAP_S  # writes this close share a flush (one write per socket)

Arrivals = list[float]
Writes = list[tuple[float, int]]  # (time written, index of the change whose value went out)


@dataclass(frozen=True)
class Pattern:
    name: str
    make: Callable[[random.Random, float], Arrivals]


def regular(rate: float) -> Pattern:
    def make(rnd: random.Random, seconds: float) -> Arrivals:
        start = rnd.random() / rate
        return [start + n / rate for n in range(int(seconds * rate))]

    return Pattern(f"regular, {rate:g}/s", make)


def random_arrivals(rate: float) -> Pattern:
    def make(rnd: random.Random, seconds: float) -> Arrivals:
        times, now = [], rnd.expovariate(rate)
        while now < seconds:
            times.append(now)
            now += rnd.expovariate(rate)
        return times

    return Pattern(f"random, {rate:g}/s", make)


def bursts(rate: float, size: int, spread_s: float) -> Pattern:
    """Bursts of `size` changes within `spread_s`, the bursts at random, `rate` changes/s."""

    def make(rnd: random.Random, seconds: float) -> Arrivals:
        times, now = [], rnd.expovariate(rate / size)
        while now < seconds:
            times.extend(sorted(now + rnd.random() * spread_s for _ in range(size)))
            now += rnd.expovariate(rate / size)
        return times

    return Pattern(f"bursts of {size} in {spread_s * 1000:g} ms, {rate:g}/s", make)


PATTERNS: Final = (
    regular(10),
    regular(2.5),
    random_arrivals(10),
    random_arrivals(2.5),
    bursts(10, 4, 0.05),
)


def paced_writes(rule: Pacing, arrivals: Arrivals) -> Writes:
    """The writes `rule` makes of one market whose changes arrive at `arrivals`, as the feed's
    flush makes them (services/live_odds.py): a change goes out when it is due, else the
    latest value goes out when it falls due."""
    writes: Writes = []
    slot: float | None = None
    waiting: int | None = None

    def gap(index: int) -> float:
        return arrivals[index] - arrivals[index - 1] if index else math.inf

    for index, arrived in enumerate(arrivals):
        if waiting is not None:
            due = rule.due_at(slot, arrivals[waiting], gap(waiting))
            if due <= arrived:
                writes.append((due, waiting))
                slot, waiting = rule.slot_of_write(due, due), None
        due = rule.due_at(slot, arrived, gap(index))
        if due <= arrived:
            writes.append((arrived, index))
            slot, waiting = rule.slot_of_write(due, arrived), None
        else:
            waiting = index
    if waiting is not None:
        writes.append((rule.due_at(slot, arrivals[waiting], gap(waiting)), waiting))
    return writes


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


def staleness(arrivals: Arrivals, writes: Writes, seconds: float) -> list[float]:
    """At each sample: 0 while the shown value is the newest, else how long a newer one exists."""
    shown_at = [at for at, _ in writes]
    ages = []
    now = SAMPLE_S
    while now < seconds:
        written = bisect.bisect_right(shown_at, now) - 1
        newest = bisect.bisect_right(arrivals, now) - 1
        if written >= 0:
            shown = writes[written][1]
            ages.append(now - arrivals[shown + 1] if newest > shown else 0.0)
        now += SAMPLE_S
    return ages


def socket_writes_per_s(market_writes: Sequence[Writes], seconds: float) -> float:
    """Writes to sockets watching WATCHED markets each, per socket and second."""
    counts = []
    for first in range(0, len(market_writes) - WATCHED + 1, WATCHED):
        times = sorted(at for writes in market_writes[first : first + WATCHED] for at, _ in writes)
        flushes, flush_at = 0, -math.inf
        for at in times:
            if at - flush_at > SAME_FLUSH_S:
                flushes, flush_at = flushes + 1, at
        counts.append(flushes / seconds)
    return sum(counts) / len(counts)


def compare(
    pattern: Pattern,
    rule: Pacing,
    *,
    seconds: float,
    markets: int,
) -> dict[str, float]:
    rnd = random.Random(7)
    holds: list[float] = []
    ages: list[float] = []
    per_market: list[Writes] = []
    for _ in range(markets):
        arrivals = pattern.make(rnd, seconds)
        writes = paced_writes(rule, arrivals)
        per_market.append(writes)
        holds.extend(at - arrivals[index] for at, index in writes)
        ages.extend(staleness(arrivals, writes, seconds))
    return {
        "writesPerMarketPerS": sum(len(w) for w in per_market) / markets / seconds,
        "waitP50Ms": percentile(holds, 0.5) * 1000,
        "waitP99Ms": percentile(holds, 0.99) * 1000,
        "staleMeanMs": sum(ages) / len(ages) * 1000,
        "staleP99Ms": percentile(ages, 0.99) * 1000,
        "socketWritesPerS": socket_writes_per_s(per_market, seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pacing", description=__doc__)
    parser.add_argument("--interval-ms", type=float, default=250)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--markets", type=int, default=40)
    args = parser.parse_args(argv)
    interval_s = args.interval_ms / 1000
    names: dict[PacingName, str] = {
        "beat": "`beat`: the latest value on a shared beat",
        "first-change": "`first-change`: the first change after the interval",
    }
    print(
        f"Interval {args.interval_ms:g} ms; {args.markets} markets for {args.seconds:g} s per"
        f" pattern; sockets watch {WATCHED} markets each.\n"
    )
    print(
        "| changes per market | rule | writes/market/s | wait p50 / p99 | shown value not"
        " the newest: mean / p99 | socket writes/s |"
    )
    print("|---|---|---|---|---|---|")
    for pattern in PATTERNS:
        for rule, name in names.items():
            figures = compare(
                pattern, pacing(rule, interval_s), seconds=args.seconds, markets=args.markets
            )
            print(
                f"| {pattern.name} | {name} | {figures['writesPerMarketPerS']:.2f}"
                f" | {figures['waitP50Ms']:.0f} / {figures['waitP99Ms']:.0f} ms"
                f" | {figures['staleMeanMs']:.0f} / {figures['staleP99Ms']:.0f} ms"
                f" | {figures['socketWritesPerS']:.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
