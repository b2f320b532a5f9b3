"""Polymarket order books per outcome token, and the odds they show, by Polymarket's own rule.

Pure: updates arrive as values with their upstream millisecond timestamps; nothing here reads
a clock or a socket. The feed turns websocket events into these calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Final, Literal

from game.markets import Resolution
from game.money import clamp_odds

ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
TWO: Final = Decimal(2)
# Polymarket shows the last trade instead of the midpoint when the spread is wider than this.
MAX_MIDPOINT_SPREAD: Final = Decimal("0.10")

# Polymarket's words for a resting order's side: BUY rests on the bids, SELL on the asks.
OrderSide = Literal["BUY", "SELL"]
# One price level as (price, size): the total size resting at that price.
Level = tuple[Decimal, Decimal]


class BookChange(StrEnum):
    """What became of one update offered to a book."""

    APPLIED = "applied"
    STALE = "stale"  # older than what the book already holds; a later state wins
    INVALID = "invalid"  # a price outside [0, 1] or a negative size: never enters a book
    UNTRACKED = "untracked"  # a token nobody follows
    AWAITING_SNAPSHOT = "awaiting_snapshot"  # level changes mean nothing before a first snapshot


def is_price(value: Decimal) -> bool:
    """A Polymarket price is a probability: finite and within [0, 1]."""
    return value.is_finite() and ZERO <= value <= ONE


def is_size(value: Decimal) -> bool:
    return value.is_finite() and value >= ZERO


def displayed_probability(
    best_bid: Decimal | None, best_ask: Decimal | None, last_trade: Decimal | None
) -> Decimal | None:
    """Polymarket's shown price: the midpoint, or the last trade when a side is missing or the
    spread is wider than 10 cents; None when neither is known. Clamped to stored odds."""
    if best_bid is not None and best_ask is not None and best_ask - best_bid <= MAX_MIDPOINT_SPREAD:
        return clamp_odds((best_bid + best_ask) / TWO)
    if last_trade is not None:
        return clamp_odds(last_trade)
    return None


def _levels(levels: Iterable[Level]) -> dict[Decimal, Decimal] | None:
    """A side of a snapshot as price -> size without empty levels; None if any level is invalid."""
    side: dict[Decimal, Decimal] = {}
    for price, size in levels:
        if not is_price(price) or not is_size(size):
            return None
        if size:
            side[price] = size
        else:
            side.pop(price, None)
    return side


@dataclass(slots=True)
class TokenBook:
    """One outcome token's book as Polymarket last described it: levels, last trade, tick size.

    Each part keeps the upstream timestamp of its newest change, so that a late, older update
    (from a second connection or a replay) never overwrites newer state; equal times apply.
    """

    token_id: str
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    last_trade_price: Decimal | None = None
    tick_size: Decimal | None = None
    book_ms: int | None = None  # newest snapshot or level change applied; None before a snapshot
    trade_ms: int | None = None
    tick_ms: int | None = None
    best_bid: Decimal | None = None  # kept in step with `bids`: max price, None when empty
    best_ask: Decimal | None = None  # kept in step with `asks`: min price, None when empty

    def replace_book(
        self,
        bids: Iterable[Level],
        asks: Iterable[Level],
        timestamp_ms: int,
        tick_size: Decimal | None = None,
    ) -> BookChange:
        """Replace both sides with a snapshot. Level order does not matter; size 0 is no level.

        The snapshot's own last trade price is not taken: upstream it is sometimes the other
        token's, so only trade events set the last trade.
        """
        if self.book_ms is not None and timestamp_ms < self.book_ms:
            return BookChange.STALE
        new_bids, new_asks = _levels(bids), _levels(asks)
        if new_bids is None or new_asks is None:
            return BookChange.INVALID
        if tick_size is not None and not (tick_size.is_finite() and ZERO < tick_size <= ONE):
            return BookChange.INVALID
        self.bids, self.asks = new_bids, new_asks
        self.best_bid = max(new_bids, default=None)
        self.best_ask = min(new_asks, default=None)
        self.book_ms = timestamp_ms
        if tick_size is not None and (self.tick_ms is None or timestamp_ms >= self.tick_ms):
            self.tick_size, self.tick_ms = tick_size, timestamp_ms
        return BookChange.APPLIED

    def change_level(
        self, side: OrderSide, price: Decimal, size: Decimal, timestamp_ms: int
    ) -> BookChange:
        """Set the total size resting at one price; size 0 removes the level."""
        if not is_price(price) or not is_size(size):
            return BookChange.INVALID
        if self.book_ms is None:
            return BookChange.AWAITING_SNAPSHOT
        if timestamp_ms < self.book_ms:
            return BookChange.STALE
        self.book_ms = timestamp_ms
        if side == "BUY":
            if size:
                self.bids[price] = size
                if self.best_bid is None or price > self.best_bid:
                    self.best_bid = price
            elif self.bids.pop(price, None) is not None and price == self.best_bid:
                self.best_bid = max(self.bids, default=None)
        elif size:
            self.asks[price] = size
            if self.best_ask is None or price < self.best_ask:
                self.best_ask = price
        elif self.asks.pop(price, None) is not None and price == self.best_ask:
            self.best_ask = min(self.asks, default=None)
        return BookChange.APPLIED

    def record_trade(self, price: Decimal, timestamp_ms: int) -> BookChange:
        """Remember a fill's price: the shown price when the book cannot give a midpoint."""
        if not is_price(price):
            return BookChange.INVALID
        if self.trade_ms is not None and timestamp_ms < self.trade_ms:
            return BookChange.STALE
        self.last_trade_price, self.trade_ms = price, timestamp_ms
        return BookChange.APPLIED

    def change_tick_size(self, tick_size: Decimal, timestamp_ms: int) -> BookChange:
        """Take a new minimum price step (it moves to 0.001 near the ends of the range)."""
        if not (tick_size.is_finite() and ZERO < tick_size <= ONE):
            return BookChange.INVALID
        if self.tick_ms is not None and timestamp_ms < self.tick_ms:
            return BookChange.STALE
        self.tick_size, self.tick_ms = tick_size, timestamp_ms
        return BookChange.APPLIED

    @property
    def displayed_probability(self) -> Decimal | None:
        """The price Polymarket shows for this token, as clamped odds, or None if unknown."""
        return displayed_probability(self.best_bid, self.best_ask, self.last_trade_price)


@dataclass(slots=True)
class OrderBooks:
    """The books of every followed token; updates for other tokens are not kept.

    Upstream sends the complementary token's changes even to a client that follows one token,
    and broadcasts some events to everyone, so following is explicit.
    """

    books: dict[str, TokenBook] = field(default_factory=dict)

    def follow(self, token_ids: Iterable[str]) -> None:
        for token_id in token_ids:
            self.books.setdefault(token_id, TokenBook(token_id))

    def forget(self, token_ids: Iterable[str]) -> None:
        for token_id in token_ids:
            self.books.pop(token_id, None)

    def book(self, token_id: str) -> TokenBook | None:
        return self.books.get(token_id)

    def replace_book(
        self,
        token_id: str,
        bids: Iterable[Level],
        asks: Iterable[Level],
        timestamp_ms: int,
        tick_size: Decimal | None = None,
    ) -> BookChange:
        book = self.books.get(token_id)
        if book is None:
            return BookChange.UNTRACKED
        return book.replace_book(bids, asks, timestamp_ms, tick_size)

    def change_level(
        self, token_id: str, side: OrderSide, price: Decimal, size: Decimal, timestamp_ms: int
    ) -> BookChange:
        book = self.books.get(token_id)
        if book is None:
            return BookChange.UNTRACKED
        return book.change_level(side, price, size, timestamp_ms)

    def record_trade(self, token_id: str, price: Decimal, timestamp_ms: int) -> BookChange:
        book = self.books.get(token_id)
        if book is None:
            return BookChange.UNTRACKED
        return book.record_trade(price, timestamp_ms)

    def change_tick_size(self, token_id: str, tick_size: Decimal, timestamp_ms: int) -> BookChange:
        book = self.books.get(token_id)
        if book is None:
            return BookChange.UNTRACKED
        return book.change_tick_size(tick_size, timestamp_ms)


def complementary_odds(
    this_price: Decimal | None, that_price: Decimal | None
) -> tuple[Decimal, Decimal] | None:
    """Clamped (this, that) odds from each token's own shown price.

    Both known: each stands as Polymarket shows it (their sum may differ from 1 by the spread).
    One known: the other is its complement 1 - p, as a binary market's two prices sum to one.
    Neither known: None, and the market keeps its previous odds.
    """
    if this_price is not None and that_price is not None:
        return clamp_odds(this_price), clamp_odds(that_price)
    if this_price is not None:
        return clamp_odds(this_price), clamp_odds(ONE - this_price)
    if that_price is not None:
        return clamp_odds(ONE - that_price), clamp_odds(that_price)
    return None


def displayed_odds(
    this_book: TokenBook | None, that_book: TokenBook | None
) -> tuple[Decimal, Decimal] | None:
    """A market's shown (this, that) odds from the books of its first and second outcome token."""
    this_price = this_book.displayed_probability if this_book is not None else None
    that_price = that_book.displayed_probability if that_book is not None else None
    return complementary_odds(this_price, that_price)


@dataclass(frozen=True, slots=True)
class MarketTokens:
    """A market's two outcome tokens: this is Polymarket's first outcome, that the second."""

    this_token_id: str
    that_token_id: str

    def odds(self, books: OrderBooks) -> tuple[Decimal, Decimal] | None:
        """The market's shown (this, that) odds from the followed books."""
        return displayed_odds(books.book(self.this_token_id), books.book(self.that_token_id))

    def resolution(self, winning_token_id: str) -> Resolution | None:
        return resolution_for_winner(winning_token_id, self.this_token_id, self.that_token_id)


def resolution_for_winner(
    winning_token_id: str, this_token_id: str, that_token_id: str
) -> Resolution | None:
    """The side whose token won, mapped by token id (labels vary); None for a foreign token."""
    if winning_token_id == this_token_id:
        return Resolution.THIS
    if winning_token_id == that_token_id:
        return Resolution.THAT
    return None
