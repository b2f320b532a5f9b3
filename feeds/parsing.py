"""Pure parsing of Polymarket Gamma and CLOB JSON into the game's market objects.

No I/O. Every function accepts any JSON-like value and answers None for what it
cannot read: upstream records are untrusted, and one bad record must never stop
a poll (docs/invariants.md, Feed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Final

import orjson

from game.markets import MarketListing, Resolution, UpstreamState
from game.money import clamp_odds

logger = logging.getLogger("thisthat.feed")

ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
HALF: Final = Decimal("0.5")
# Volumes beyond this are not real trading volume but garbage (and would overflow storage).
MAX_VOLUME: Final = Decimal(10) ** 15

UMA_RESOLVED: Final = "resolved"


@dataclass(slots=True)
class ParseStats:
    """How many upstream records a caller read and how many it had to skip."""

    parsed: int = 0
    skipped: int = 0

    def record(self, ok: bool) -> None:
        if ok:
            self.parsed += 1
        else:
            self.skipped += 1


# --- small readers: each answers None rather than raising ---------------------------------


def decimal_or_none(value: object) -> Decimal | None:
    """A finite Decimal from a JSON string or number, read through `str` (never float maths)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError, TypeError):
        # ValueError: Python refuses str() of ints with more than 4300 digits.
        return None
    return number if number.is_finite() else None


def probability_or_none(value: object) -> Decimal | None:
    """A price in [0, 1], unclamped; anything else is not a probability."""
    number = decimal_or_none(value)
    if number is None or number < ZERO or number > ONE:
        return None
    return number


def _json_list(value: object) -> list[object] | None:
    """Gamma sends some lists as JSON-encoded strings; accept both forms."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except (orjson.JSONDecodeError, ValueError, RecursionError):
            return None
    return value if isinstance(value, list) else None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _datetime_utc(value: object) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _two(values: list[object] | None) -> tuple[object, object] | None:
    if values is None or len(values) != 2:
        return None
    return values[0], values[1]


def _two_prices(value: object) -> tuple[Decimal, Decimal] | None:
    pair = _two(_json_list(value))
    if pair is None:
        return None
    first, second = probability_or_none(pair[0]), probability_or_none(pair[1])
    if first is None or second is None:
        return None
    return first, second


def _category(raw: Mapping[str, object]) -> str | None:
    direct = _text(raw.get("category"))
    if direct is not None:
        return direct
    events = raw.get("events")
    if isinstance(events, list):
        for event in events:
            if isinstance(event, Mapping):
                found = _text(event.get("category"))
                if found is not None:
                    return found
    tags = raw.get("tags")
    if isinstance(tags, list):
        for tag in tags:
            # Gamma tags are objects with a label; CLOB tags are plain strings.
            label = _text(tag.get("label")) if isinstance(tag, Mapping) else _text(tag)
            if label is not None:
                return label
    return None


def _volume(raw: Mapping[str, object]) -> Decimal:
    for key in ("volumeNum", "volume"):
        volume = decimal_or_none(raw.get(key))
        if volume is not None and ZERO <= volume <= MAX_VOLUME:
            return volume
    return ZERO


# --- Gamma markets ------------------------------------------------------------------------


def parse_gamma_market(raw: object) -> MarketListing | None:
    """One Gamma `/markets` record as a binary market listing, or None if it is not one.

    Outcome 0 is "this", outcome 1 is "that"; odds are the outcome prices, clamped.
    """
    try:
        return _parse_gamma_market(raw)
    except Exception:  # noqa: BLE001 - the contract is "never raises"; a bug here must not stop a poll
        logger.exception("unexpected error parsing a Gamma market")
        return None


def _parse_gamma_market(raw: object) -> MarketListing | None:
    if not isinstance(raw, Mapping):
        return None
    source_id = _text(raw.get("conditionId"))
    question = _text(raw.get("question"))
    labels = _two(_json_list(raw.get("outcomes")))
    tokens = _two(_json_list(raw.get("clobTokenIds")))
    prices = _two_prices(raw.get("outcomePrices"))
    if source_id is None or question is None or labels is None or tokens is None:
        return None
    if prices is None:
        return None
    this_label, that_label = _text(labels[0]), _text(labels[1])
    this_token, that_token = _text(tokens[0]), _text(tokens[1])
    if this_label is None or that_label is None or this_token is None or that_token is None:
        return None
    if this_token == that_token:
        return None
    accepting = raw.get("acceptingOrders")
    return MarketListing(
        source_id=source_id,
        question=question,
        this_label=this_label,
        that_label=that_label,
        this_token_id=this_token,
        that_token_id=that_token,
        this_odds=clamp_odds(prices[0]),
        that_odds=clamp_odds(prices[1]),
        ends_at=_datetime_utc(raw.get("endDate")) or _datetime_utc(raw.get("endDateIso")),
        category=_category(raw),
        image_url=_text(raw.get("image")) or _text(raw.get("icon")),
        volume=_volume(raw),
        accepting_orders=accepting if isinstance(accepting, bool) else True,
        slug=_text(raw.get("slug")),
    )


def parse_gamma_markets(
    raws: Iterable[object], stats: ParseStats | None = None
) -> list[MarketListing]:
    """Every readable binary market of a Gamma listing; the rest are counted and skipped."""
    listings: list[MarketListing] = []
    for raw in raws:
        listing = parse_gamma_market(raw)
        if stats is not None:
            stats.record(listing is not None)
        if listing is None:
            source = raw.get("conditionId") if isinstance(raw, Mapping) else None
            logger.debug("skipped unreadable or non-binary Gamma market %r", source)
        else:
            listings.append(listing)
    return listings


# --- odds ---------------------------------------------------------------------------------


def parse_midpoint_odds(
    midpoints: object, this_token: object, that_token: object
) -> tuple[Decimal, Decimal] | None:
    """Clamped (this, that) odds from CLOB midpoints keyed by token id.

    With only one side known, the other is its complement: a binary market's
    two prices sum to one.
    """
    if not isinstance(midpoints, Mapping):
        return None
    this_mid = (
        probability_or_none(midpoints.get(this_token)) if isinstance(this_token, str) else None
    )
    that_mid = (
        probability_or_none(midpoints.get(that_token)) if isinstance(that_token, str) else None
    )
    return complete_odds(this_mid, that_mid)


def complete_odds(this: Decimal | None, that: Decimal | None) -> tuple[Decimal, Decimal] | None:
    """Clamped (this, that) odds from raw prices; a missing side is the other's complement."""
    if this is not None and that is not None:
        return clamp_odds(this), clamp_odds(that)
    if this is not None:
        return clamp_odds(this), clamp_odds(ONE - this)
    if that is not None:
        return clamp_odds(ONE - that), clamp_odds(that)
    return None


def midpoint_value(value: object) -> Decimal | None:
    """One CLOB midpoint answer: a string or number, or an object with `mid`/`mid_price`."""
    if isinstance(value, Mapping):
        for key in ("mid", "mid_price"):
            if key in value:
                return probability_or_none(value[key])
        return None
    return probability_or_none(value)


# --- resolution ---------------------------------------------------------------------------


def _state(
    source_id: str,
    closed: bool,
    resolution: Resolution | None,
    prices: tuple[Decimal, Decimal] | None,
) -> UpstreamState:
    return UpstreamState(
        source_id=source_id,
        closed=closed or resolution is not None,
        resolution=resolution,
        this_odds=clamp_odds(prices[0]) if prices else None,
        that_odds=clamp_odds(prices[1]) if prices else None,
    )


def _winner_by_prices(prices: tuple[Decimal, Decimal]) -> Resolution | None:
    if prices == (ONE, ZERO):
        return Resolution.THIS
    if prices == (ZERO, ONE):
        return Resolution.THAT
    return None


def resolution_from_gamma(raw: object) -> UpstreamState | None:
    """What a Gamma market record says about its end.

    A closed market is final when UMA says "resolved" (or, for old records
    without a UMA status, when its prices are exactly 1/0): prices 1/0 or 0/1
    name the winner, 0.5/0.5 is a 50-50 split. Closed at 0/0 is a legacy void
    market: cancelled. Anything else closed is waiting for its resolution.
    """
    try:
        return _resolution_from_gamma(raw)
    except Exception:  # noqa: BLE001 - the contract is "never raises"
        logger.exception("unexpected error reading a Gamma resolution")
        return None


def _resolution_from_gamma(raw: object) -> UpstreamState | None:
    if not isinstance(raw, Mapping):
        return None
    source_id = _text(raw.get("conditionId"))
    if source_id is None:
        return None
    prices = _two_prices(raw.get("outcomePrices"))
    if raw.get("closed") is not True:
        return _state(source_id, False, None, prices)
    if prices is None:
        return _state(source_id, True, None, None)
    status = raw.get("umaResolutionStatus")
    status_text = status.strip().lower() if isinstance(status, str) else None
    resolution: Resolution | None = None
    if prices == (ZERO, ZERO):
        resolution = Resolution.CANCELLED
    elif status_text == UMA_RESOLVED:
        resolution = _winner_by_prices(prices)
        if resolution is None and prices == (HALF, HALF):
            resolution = Resolution.SPLIT
    elif not status_text:
        resolution = _winner_by_prices(prices)
    return _state(source_id, True, resolution, prices)


def resolution_from_clob(raw: object) -> UpstreamState | None:
    """What a CLOB market record says about its end.

    A closed market with one `tokens[].winner` is won by that token's side
    (token 0 is "this"); `is_50_50_outcome` is a split; closed at prices 0/0
    with no winner is a legacy void market: cancelled. Anything else closed is
    waiting for its resolution.
    """
    try:
        return _resolution_from_clob(raw)
    except Exception:  # noqa: BLE001 - the contract is "never raises"
        logger.exception("unexpected error reading a CLOB resolution")
        return None


def _resolution_from_clob(raw: object) -> UpstreamState | None:
    if not isinstance(raw, Mapping):
        return None
    source_id = _text(raw.get("condition_id"))
    tokens = raw.get("tokens")
    if source_id is None or not isinstance(tokens, list) or len(tokens) != 2:
        return None
    if not all(isinstance(token, Mapping) for token in tokens):
        return None
    first, second = (probability_or_none(token.get("price")) for token in tokens)
    prices = (first, second) if first is not None and second is not None else None
    if raw.get("closed") is not True:
        return _state(source_id, False, None, prices)
    winners = [token.get("winner") is True for token in tokens]
    resolution: Resolution | None = None
    if raw.get("is_50_50_outcome") is True:
        resolution = Resolution.SPLIT
    elif winners == [True, False]:
        resolution = Resolution.THIS
    elif winners == [False, True]:
        resolution = Resolution.THAT
    elif not any(winners) and prices == (ZERO, ZERO):
        resolution = Resolution.CANCELLED
    return _state(source_id, True, resolution, prices)
