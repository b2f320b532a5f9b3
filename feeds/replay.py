"""Replay source: a recorded market timeline (JSON lines) played back at any speed.

Each line is one event at `at` seconds from the start:

    {"at": 0, "type": "market", "gamma": {...a Gamma /markets record...}}
    {"at": 5, "type": "odds", "sourceId": "0x..", "thisOdds": "0.41", "thatOdds": "0.59"}
    {"at": 90, "type": "close", "sourceId": "0x.."}
    {"at": 100, "type": "resolve", "sourceId": "0x..", "resolution": "this"}
    {"at": 110, "type": "remove", "sourceId": "0x.."}
    {"at": 6, "type": "frame", "frame": [{"event_type": "book", ...}, ...]}

A `frame` line carries one message of Polymarket's market channel (websocket) as it was sent: a
JSON object, an array, or a plain text such as "PONG"; the server applies it exactly as a frame
read from the live stream (services/live_odds.py).

`resolution` is one of this, that, split, cancelled. This module only reads and
times events; what they do to stored markets is the sink's business.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final

import orjson

from feeds.parsing import ParseStats, complete_odds, parse_gamma_market, probability_or_none
from game.markets import MarketListing, Resolution

logger = logging.getLogger("thisthat.feed")

SAMPLE_TIMELINE: Final = Path(__file__).resolve().parent / "timelines" / "sample.jsonl"
# A looped timeline starts its next pass this long before its first market ends (or, when it
# ends none, after its last event).
LOOP_GAP_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class MarketEvent:
    """A market appears (or its listing changes)."""

    at: float
    listing: MarketListing

    @property
    def source_id(self) -> str:
        return self.listing.source_id


@dataclass(frozen=True, slots=True)
class OddsEvent:
    at: float
    source_id: str
    this_odds: Decimal
    that_odds: Decimal


@dataclass(frozen=True, slots=True)
class CloseEvent:
    """Trading stops upstream; the resolution comes later."""

    at: float
    source_id: str


@dataclass(frozen=True, slots=True)
class ResolveEvent:
    at: float
    source_id: str
    resolution: Resolution


@dataclass(frozen=True, slots=True)
class RemoveEvent:
    """The market is gone upstream."""

    at: float
    source_id: str


@dataclass(frozen=True, slots=True)
class FrameEvent:
    """One market channel frame, as its text."""

    at: float
    text: str


# The fields of market channel frames that name a market or a token (rewritten per replay pass).
FRAME_ID_FIELDS: Final = ("market", "asset_id", "condition_id", "winning_asset_id")
FRAME_ID_LISTS: Final = ("assets_ids", "clob_token_ids")


ReplayEvent = MarketEvent | OddsEvent | CloseEvent | ResolveEvent | RemoveEvent | FrameEvent
ReplaySink = Callable[[ReplayEvent], Awaitable[None]]


def parse_event(record: object) -> ReplayEvent | None:
    """One timeline record as an event, or None if it is malformed."""
    if not isinstance(record, Mapping):
        return None
    at = record.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float) or not 0 <= at < float("inf"):
        return None
    at = float(at)
    kind = record.get("type")
    if kind == "frame":
        frame = record.get("frame")
        if frame is None:
            return None
        text = frame if isinstance(frame, str) else orjson.dumps(frame).decode()
        return FrameEvent(at, text)
    if kind == "market":
        listing = parse_gamma_market(record.get("gamma"))
        return MarketEvent(at, listing) if listing is not None else None
    source_id = record.get("sourceId")
    if not isinstance(source_id, str) or not source_id:
        return None
    if kind == "odds":
        odds = complete_odds(
            probability_or_none(record.get("thisOdds")),
            probability_or_none(record.get("thatOdds")),
        )
        return OddsEvent(at, source_id, *odds) if odds is not None else None
    if kind == "close":
        return CloseEvent(at, source_id)
    if kind == "remove":
        return RemoveEvent(at, source_id)
    if kind == "resolve":
        name = record.get("resolution")
        if not isinstance(name, str) or name not in {member.value for member in Resolution}:
            return None
        resolution = Resolution(name)
        return ResolveEvent(at, source_id, resolution)
    return None


def load_timeline(path: Path | str, stats: ParseStats | None = None) -> list[ReplayEvent]:
    """The events of a timeline file in time order; bad lines are logged, counted and skipped."""
    stats = stats if stats is not None else ParseStats()
    events: list[ReplayEvent] = []
    with Path(path).open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = parse_event(orjson.loads(line))
            except orjson.JSONDecodeError:
                event = None
            stats.record(event is not None)
            if event is None:
                logger.warning("%s:%d: skipped an unreadable timeline line", path, number)
            else:
                events.append(event)
    events.sort(key=lambda event: event.at)  # stable: same-time events keep file order
    return events


def _for_pass(event: ReplayEvent, loop: int, offset: float) -> ReplayEvent:
    """The event as played in pass `loop`: later passes get fresh market and token ids,
    so a looped timeline opens new markets instead of reopening settled ones."""
    if loop == 0:
        return event
    suffix = f"~{loop}"
    if isinstance(event, MarketEvent):
        listing = dataclasses.replace(
            event.listing,
            source_id=event.listing.source_id + suffix,
            this_token_id=event.listing.this_token_id + suffix,
            that_token_id=event.listing.that_token_id + suffix,
        )
        return MarketEvent(event.at + offset, listing)
    if isinstance(event, FrameEvent):
        return FrameEvent(event.at + offset, _frame_for_pass(event.text, suffix))
    return dataclasses.replace(event, at=event.at + offset, source_id=event.source_id + suffix)


def _frame_for_pass(text: str, suffix: str) -> str:
    """The frame with every market and token id suffixed as the pass's markets are."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text  # a plain text frame names no market

    def rename(item: object) -> object:
        if isinstance(item, list):
            return [rename(element) for element in item]
        if not isinstance(item, dict):
            return item
        renamed = {key: rename(element) for key, element in item.items()}
        for key in FRAME_ID_FIELDS:
            name = renamed.get(key)
            if isinstance(name, str):
                renamed[key] = name + suffix
        for key in FRAME_ID_LISTS:
            ids = renamed.get(key)
            if isinstance(ids, list):
                renamed[key] = [i + suffix if isinstance(i, str) else i for i in ids]
        return renamed

    return orjson.dumps(rename(value)).decode()


def pass_of(source_id: str) -> int:
    """Which pass of a timeline stored this market id: 0 for the plain id, N for `id~N`."""
    _, _, suffix = source_id.rpartition("~")
    return int(suffix) if "~" in source_id and suffix.isdigit() else 0


def pass_period(events: Sequence[ReplayEvent]) -> float:
    """How far apart the passes of a looped timeline start.

    LOOP_GAP_S before the first of its markets ends (closes, resolves or is removed), so the
    next pass's markets are open before the last pass's start to end, and a long run always has
    open markets. A timeline that ends none of the markets it opens loops LOOP_GAP_S after its
    last event.
    """
    ordered = sorted(events, key=lambda event: event.at)
    length = ordered[-1].at + LOOP_GAP_S
    opened = {event.source_id for event in ordered if isinstance(event, MarketEvent)}
    ends = [
        event.at
        for event in ordered
        if isinstance(event, CloseEvent | ResolveEvent | RemoveEvent) and event.source_id in opened
    ]
    if not ends:
        return length
    return min(length, max(LOOP_GAP_S, min(ends) - LOOP_GAP_S))


def _passes(
    ordered: Sequence[ReplayEvent], period: float, first_pass: int, loop_forever: bool
) -> Iterator[ReplayEvent]:
    """The events of every pass, in time order: pass N starts (N - first_pass) * period in, so
    passes overlap when the period is shorter than the timeline (an event of an earlier pass
    goes first at the same time)."""
    heap: list[tuple[float, int, int]] = []  # (at, pass, index of its next event)
    next_pass = first_pass

    def start_pass() -> None:
        nonlocal next_pass
        heapq.heappush(heap, (ordered[0].at + (next_pass - first_pass) * period, next_pass, 0))
        next_pass += 1

    start_pass()
    while heap:
        next_start = ordered[0].at + (next_pass - first_pass) * period
        if loop_forever and next_start <= heap[0][0]:
            start_pass()
            continue
        _, loop, index = heapq.heappop(heap)
        offset = (loop - first_pass) * period
        yield _for_pass(ordered[index], loop, offset)
        if index + 1 < len(ordered):
            heapq.heappush(heap, (ordered[index + 1].at + offset, loop, index + 1))
        elif loop_forever and not heap:
            start_pass()


async def play(
    events: Sequence[ReplayEvent],
    speed: float,
    sink: ReplaySink,
    *,
    loop_forever: bool = False,
    first_pass: int = 0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Await `sink(event)` for each event at `event.at / speed` seconds from now.

    Returns the number of events delivered. Stops after the last event unless
    `loop_forever`, in which case it runs until cancelled, a new pass every
    `pass_period(events)`. A `first_pass` above 0 plays the timeline from its beginning under
    that pass's fresh ids (a used database starts over).
    """
    if not speed > 0:
        raise ValueError(f"replay speed must be positive, not {speed}")
    if not events:
        return 0
    ordered = sorted(events, key=lambda event: event.at)
    start = clock()
    delivered = 0
    for event in _passes(ordered, pass_period(ordered), first_pass, loop_forever):
        delay = start + event.at / speed - clock()
        if delay > 0:
            await sleep(delay)
        await sink(event)
        delivered += 1
    return delivered
