"""Pure parsing of Polymarket's CLOB market websocket channel: one text frame into typed events.

No I/O, and it never raises: a frame is a plain-text notice, one JSON object or an array of
them, and whatever cannot be read is named by a `BadInput` kind while the rest still counts.
Message shapes and the rules relied on: docs/market-channel.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Final, TypeAlias

import orjson

from game.order_book import Level, OrderSide, is_price, is_size

logger = logging.getLogger("thisthat.feed")

ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
# Millisecond timestamps are 13 digits today; the bound keeps int() cheap on hostile input.
MAX_TIMESTAMP_DIGITS: Final = 18


class BadInput(StrEnum):
    """Why part of a frame was skipped."""

    MALFORMED_JSON = "malformed_json"
    UNKNOWN_TEXT = "unknown_text"  # plain text that is no known notice
    NOT_AN_OBJECT = "not_an_object"  # JSON, but not an object where an event belongs
    UNKNOWN_EVENT = "unknown_event"  # no event_type, or one this channel does not send
    LEGACY_PRICE_CHANGE = (
        "legacy_price_change"  # the per-level or `changes` format before 2025-09-15
    )
    LEGACY_TICK_SIZE_CHANGE = "legacy_tick_size_change"  # with `side`, as only old docs show it
    BAD_PRICE = "bad_price"  # not a decimal, or outside [0, 1]
    BAD_SIZE = "bad_size"  # not a decimal, or negative
    MISSING_FIELD = "missing_field"  # a required field is absent or not of its type
    UNREADABLE = "unreadable"  # the parser itself failed; logged, and a bug to fix


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """A token's whole book. Its upstream `last_trade_price` is left out: it is unreliable."""

    asset_id: str
    market: str
    timestamp_ms: int
    bids: tuple[Level, ...]  # (price, size), in wire order (best bid last, usually)
    asks: tuple[Level, ...]
    tick_size: Decimal | None  # absent on refreshes sent after a trade


@dataclass(frozen=True, slots=True)
class LevelChange:
    """The new total size at one price of one token's book; size 0 removes the level."""

    asset_id: str
    price: Decimal
    size: Decimal
    side: OrderSide  # BUY changes the bids, SELL the asks
    best_bid: Decimal | None  # the token's top after the batch; None when that side is empty
    best_ask: Decimal | None


@dataclass(frozen=True, slots=True)
class PriceChange:
    """A batch of level changes of one market, usually mirrored across its two tokens."""

    market: str
    timestamp_ms: int
    changes: tuple[LevelChange, ...]


@dataclass(frozen=True, slots=True)
class LastTrade:
    """A fill on one token: the shown price when its book is too thin for a midpoint."""

    asset_id: str
    market: str
    price: Decimal
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class TickSizeChange:
    asset_id: str
    market: str
    new_tick_size: Decimal
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class BestBidAsk:
    """Upstream's own top of book for a token: a hint only, as its delivery is unreliable."""

    asset_id: str
    market: str
    best_bid: Decimal | None  # None when that side is empty
    best_ask: Decimal | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class NewMarket:
    """A market announced upstream; announcements repeat, so consumers deduplicate by condition."""

    condition_id: str
    gamma_id: str | None
    question: str | None
    slug: str | None
    token_ids: tuple[str, ...]  # in the order of `outcomes`
    outcomes: tuple[str, ...]
    active: bool  # False for markets announced ahead of their start, or when unsaid
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class MarketResolved:
    """A market's end: the winning token pays 1. Map it to a side by token id, not by label."""

    condition_id: str
    gamma_id: str | None
    token_ids: tuple[str, ...]
    winning_asset_id: str
    winning_outcome: str | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to our PING: the connection is alive, though data may still have stopped."""


@dataclass(frozen=True, slots=True)
class ControlText:
    """A plain-text notice from the server, such as `INVALID OPERATION` or `NO NEW ASSETS`."""

    text: str


MarketEvent: TypeAlias = (
    BookSnapshot
    | PriceChange
    | LastTrade
    | TickSizeChange
    | BestBidAsk
    | NewMarket
    | MarketResolved
    | Pong
    | ControlText
)


@dataclass(frozen=True, slots=True)
class ParsedFrame:
    """What one frame said, in order, and what had to be skipped."""

    events: tuple[MarketEvent, ...]
    skipped: tuple[BadInput, ...]


PONG: Final = "PONG"
CONTROL_TEXTS: Final = frozenset({"INVALID OPERATION", "NO NEW ASSETS"})
EMPTY: Final = ParsedFrame((), ())
PONG_FRAME: Final = ParsedFrame((Pong(),), ())


# --- field readers: each answers None for what it cannot read -------------------------------


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _timestamp_ms(value: object) -> int | None:
    if isinstance(value, str):
        if 0 < len(value) <= MAX_TIMESTAMP_DIGITS and value.isascii() and value.isdigit():
            return int(value)
        return None
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value < 10**MAX_TIMESTAMP_DIGITS
    ):
        return value
    return None


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except (InvalidOperation, ValueError):
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = Decimal(str(value))
        except (InvalidOperation, ValueError):
            return None
    else:
        return None
    return number if number.is_finite() else None


def _price(value: object) -> Decimal | None:
    number = _decimal(value)
    return number if number is not None and is_price(number) else None


def _size(value: object) -> Decimal | None:
    number = _decimal(value)
    return number if number is not None and is_size(number) else None


class _Unreadable(Exception):
    """One field could not be read; the object it belongs to is skipped with this kind."""

    def __init__(self, kind: BadInput) -> None:
        self.kind = kind


def _required_text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if isinstance(value, str) and value:
        return value
    raise _Unreadable(BadInput.MISSING_FIELD)


def _required_timestamp(raw: dict[str, Any]) -> int:
    timestamp = _timestamp_ms(raw.get("timestamp"))
    if timestamp is None:
        raise _Unreadable(BadInput.MISSING_FIELD)
    return timestamp


def _required_price(value: object) -> Decimal:
    if value is None:
        raise _Unreadable(BadInput.MISSING_FIELD)
    price = _price(value)
    if price is None:
        raise _Unreadable(BadInput.BAD_PRICE)
    return price


def _top_price(value: object, empty_sentinel: Decimal) -> Decimal | None:
    """A best bid or ask; `""`, absent, or the empty-side sentinel ("0" bid, "1" ask) is None."""
    if value is None or value == "":
        return None
    price = _required_price(value)
    return None if price == empty_sentinel else price


def _levels(value: object) -> tuple[Level, ...]:
    if not isinstance(value, list):
        raise _Unreadable(BadInput.MISSING_FIELD)
    levels: list[Level] = []
    for level in value:
        if not isinstance(level, dict):
            raise _Unreadable(BadInput.MISSING_FIELD)
        price = _required_price(level.get("price"))
        size = _size(level.get("size"))
        if size is None:
            raise _Unreadable(BadInput.BAD_SIZE)
        levels.append((price, size))
    return tuple(levels)


def _text_list(value: object) -> tuple[str, ...] | None:
    """A list of strings, sent either as a JSON array or as a string holding one."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        return None
    return tuple(value)


def _gamma_id(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(value)


# --- one event per object --------------------------------------------------------------------


def _book(raw: dict[str, Any], skipped: list[BadInput]) -> BookSnapshot | None:
    tick = raw.get("tick_size")
    tick_size = _decimal(tick) if tick is not None else None
    return BookSnapshot(
        asset_id=_required_text(raw, "asset_id"),
        market=_required_text(raw, "market"),
        timestamp_ms=_required_timestamp(raw),
        bids=_levels(raw.get("bids")),
        asks=_levels(raw.get("asks")),
        tick_size=tick_size if tick_size is not None and ZERO < tick_size <= ONE else None,
    )


def _level_change(raw: object) -> LevelChange:
    if not isinstance(raw, dict):
        raise _Unreadable(BadInput.MISSING_FIELD)
    side = raw.get("side")
    if side != "BUY" and side != "SELL":
        raise _Unreadable(BadInput.MISSING_FIELD)
    asset_id = _required_text(raw, "asset_id")
    price = _required_price(raw.get("price"))
    size = _size(raw.get("size"))
    if size is None:
        raise _Unreadable(BadInput.BAD_SIZE)
    return LevelChange(
        asset_id=asset_id,
        price=price,
        size=size,
        side=side,
        best_bid=_top_price(raw.get("best_bid"), ZERO),
        best_ask=_top_price(raw.get("best_ask"), ONE),
    )


def _price_change(raw: dict[str, Any], skipped: list[BadInput]) -> PriceChange | None:
    entries = raw.get("price_changes")
    if entries is None and ("changes" in raw or "price" in raw):
        raise _Unreadable(BadInput.LEGACY_PRICE_CHANGE)
    if not isinstance(entries, list):
        raise _Unreadable(BadInput.MISSING_FIELD)
    market = _required_text(raw, "market")
    timestamp_ms = _required_timestamp(raw)
    # Entries are absolute sizes, each for its own level: a bad one spoils no other.
    changes: list[LevelChange] = []
    for entry in entries:
        try:
            changes.append(_level_change(entry))
        except _Unreadable as unreadable:
            skipped.append(unreadable.kind)
    if not changes:
        return None
    return PriceChange(market=market, timestamp_ms=timestamp_ms, changes=tuple(changes))


def _last_trade(raw: dict[str, Any], skipped: list[BadInput]) -> LastTrade:
    return LastTrade(
        asset_id=_required_text(raw, "asset_id"),
        market=_required_text(raw, "market"),
        price=_required_price(raw.get("price")),
        timestamp_ms=_required_timestamp(raw),
    )


def _tick_size_change(raw: dict[str, Any], skipped: list[BadInput]) -> TickSizeChange:
    if "side" in raw:
        raise _Unreadable(BadInput.LEGACY_TICK_SIZE_CHANGE)
    tick_size = _decimal(raw.get("new_tick_size"))
    if tick_size is None or not ZERO < tick_size <= ONE:
        raise _Unreadable(BadInput.MISSING_FIELD)
    return TickSizeChange(
        asset_id=_required_text(raw, "asset_id"),
        market=_required_text(raw, "market"),
        new_tick_size=tick_size,
        timestamp_ms=_required_timestamp(raw),
    )


def _best_bid_ask(raw: dict[str, Any], skipped: list[BadInput]) -> BestBidAsk:
    return BestBidAsk(
        asset_id=_required_text(raw, "asset_id"),
        market=_required_text(raw, "market"),
        best_bid=_top_price(raw.get("best_bid"), ZERO),
        best_ask=_top_price(raw.get("best_ask"), ONE),
        timestamp_ms=_required_timestamp(raw),
    )


def _new_market(raw: dict[str, Any], skipped: list[BadInput]) -> NewMarket:
    condition_id = _text(raw.get("market")) or _required_text(raw, "condition_id")
    token_ids = _text_list(raw.get("assets_ids")) or _text_list(raw.get("clob_token_ids"))
    outcomes = _text_list(raw.get("outcomes"))
    if not token_ids or outcomes is None or len(outcomes) != len(token_ids):
        raise _Unreadable(BadInput.MISSING_FIELD)
    return NewMarket(
        condition_id=condition_id,
        gamma_id=_gamma_id(raw.get("id")),
        question=_text(raw.get("question")),
        slug=_text(raw.get("slug")),
        token_ids=token_ids,
        outcomes=outcomes,
        active=raw.get("active") is True,
        timestamp_ms=_required_timestamp(raw),
    )


def _market_resolved(raw: dict[str, Any], skipped: list[BadInput]) -> MarketResolved:
    return MarketResolved(
        condition_id=_text(raw.get("market")) or _required_text(raw, "condition_id"),
        gamma_id=_gamma_id(raw.get("id")),
        token_ids=_text_list(raw.get("assets_ids")) or (),
        winning_asset_id=_required_text(raw, "winning_asset_id"),
        winning_outcome=_text(raw.get("winning_outcome")),
        timestamp_ms=_required_timestamp(raw),
    )


_PARSERS: Final[dict[str, Callable[[dict[str, Any], list[BadInput]], MarketEvent | None]]] = {
    "book": _book,
    "price_change": _price_change,
    "last_trade_price": _last_trade,
    "tick_size_change": _tick_size_change,
    "best_bid_ask": _best_bid_ask,
    "new_market": _new_market,
    "market_resolved": _market_resolved,
}


def _event(raw: object, events: list[MarketEvent], skipped: list[BadInput]) -> None:
    if not isinstance(raw, dict):
        skipped.append(BadInput.NOT_AN_OBJECT)
        return
    event_type = raw.get("event_type")
    parser = _PARSERS.get(event_type) if isinstance(event_type, str) else None
    if parser is None:
        skipped.append(BadInput.UNKNOWN_EVENT)
        return
    try:
        event = parser(raw, skipped)
    except _Unreadable as unreadable:
        skipped.append(unreadable.kind)
        return
    if event is not None:
        events.append(event)


# --- frames ----------------------------------------------------------------------------------


def parse_market_frame(text: str) -> ParsedFrame:
    """Every event one text frame of the market channel carries, and what had to be skipped."""
    try:
        return _parse_market_frame(text)
    except Exception:  # noqa: BLE001 - the contract is "never raises"; one frame must not stop the feed
        logger.exception("unexpected error parsing a market channel frame")
        return ParsedFrame((), (BadInput.UNREADABLE,))


def _parse_market_frame(text: str) -> ParsedFrame:
    # Notices are plain text, not JSON: look for them before decoding.
    head = text[:1]
    if head != "{" and head != "[":
        notice = text.strip()
        if notice == PONG:
            return PONG_FRAME
        if notice in CONTROL_TEXTS:
            return ParsedFrame((ControlText(notice),), ())
    try:
        decoded = orjson.loads(text)
    except orjson.JSONDecodeError:
        looks_like_json = text.lstrip()[:1] in ("{", "[", '"')
        return ParsedFrame(
            (), (BadInput.MALFORMED_JSON if looks_like_json else BadInput.UNKNOWN_TEXT,)
        )
    events: list[MarketEvent] = []
    skipped: list[BadInput] = []
    if isinstance(decoded, list):
        for raw in decoded:
            _event(raw, events, skipped)
    else:
        _event(decoded, events, skipped)
    if not events and not skipped:
        return EMPTY
    return ParsedFrame(tuple(events), tuple(skipped))
