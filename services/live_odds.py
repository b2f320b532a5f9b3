"""Odds as Polymarket's market channel moves them: order books per token, the shown odds per
market, written in batches and announced after the write (docs/architecture.md, "An odds tick").

`on_frame` takes each websocket frame (feeds/market_stream.py calls it), parses it
(feeds/market_channel.py) and applies it to the books (game/order_book.py); nothing else
happens per frame. `flush` writes the markets whose shown odds changed, in one set-based
statement, and only what that write committed is pushed, so the odds a player sees are the odds
`bet:place` checks against. A market is written at most once per `push_interval_s`
(ODDS_PUSH_MIN_INTERVAL_MS), by the rule ODDS_PUSH_PACING names (game/pacing.py): a quiet
market's first change goes out at once; under `first-change` a busy market's first change after
the interval goes out at once too; under `beat` its latest value goes out on a beat shared by
every market, so busy markets are written together and a player watching several gets their
ticks in one write to the socket. Markets due at the same flush share its statement and its
batch of pushes either way.

A `market_resolved` frame settles its market through `resolve`, the use case the REST check
uses (one transition, whichever sees it first); a `new_market` frame asks the discoverer to mirror it if it
passes the market list's filters. Bad upstream input is counted by kind and logged at most once a
minute per kind; it never raises out of here, never moves a price, never changes a market.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

import asyncpg

from feeds.market_channel import (
    BadInput,
    BestBidAsk,
    BookSnapshot,
    ControlText,
    LastTrade,
    MarketResolved,
    NewMarket,
    PriceChange,
    TickSizeChange,
    parse_market_frame,
)
from game.markets import Resolution
from game.order_book import BookChange, MarketTokens, OrderBooks
from game.pacing import PacingName, pacing
from services import metrics
from services.markets import FeedListener, Resolver
from storage import markets as market_store
from storage.rows import Market

logger = logging.getLogger("thisthat.feed")

# One log line per kind of bad input per minute at most; the counters keep the full count.
BAD_INPUT_LOG_INTERVAL_S: Final = 60.0
# new_market announcements repeat many times; each condition id is asked about once per window.
NEW_MARKET_REMEMBER: Final = 10_000

Discoverer = Callable[[str], Awaitable[object]]


@dataclass(slots=True)
class _Followed:
    market_id: uuid.UUID
    condition_id: str
    tokens: MarketTokens
    shown: tuple[Decimal, Decimal]  # the odds last written (or read) for this market


@dataclass(slots=True)
class FlushReport:
    written: int = 0
    changed: int = 0
    resolved: int = 0


class LiveOdds:
    def __init__(
        self,
        pool: asyncpg.Pool,
        listener: FeedListener,
        resolve: Resolver,
        discover: Discoverer | None = None,
        *,
        push_interval_s: float = 0.0,
        push_pacing: PacingName = "first-change",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.listener = listener
        self.resolve = resolve
        self.discover = discover
        self.pacing = pacing(push_pacing, push_interval_s)
        self.clock = clock
        # Market -> the slot its next write counts from (game/pacing.py): under `beat`, the beat
        # it was due on, or when it was written if it was not waiting for one.
        self._written_slot: dict[uuid.UUID, float] = {}
        self.books = OrderBooks()
        self._markets: dict[uuid.UUID, _Followed] = {}
        self._by_token: dict[str, _Followed] = {}
        self._by_condition: dict[str, _Followed] = {}
        # Markets whose shown odds may have moved since the last flush, with the monotonic time
        # of the first frame that moved them (the delay metric measures from there) and the
        # upstream timestamp of the latest (the age metric).
        self._dirty: dict[uuid.UUID, float] = {}
        # Market -> the monotonic time of the latest frame that moved it, and the gap since the
        # one before (the pacing rule's).
        self._changed_at: dict[uuid.UUID, float] = {}
        self._gap: dict[uuid.UUID, float] = {}
        self._upstream_ms: dict[uuid.UUID, int] = {}
        self._resolutions: dict[uuid.UUID, Resolution] = {}
        self._announced: dict[str, None] = {}  # condition ids asked about, oldest first
        self._discoveries: list[str] = []
        self._snapshot_at: dict[str, float] = {}  # token -> when its book last came whole
        self.bad_input: Counter[str] = Counter()
        self._bad_logged_at: dict[str, float] = {}
        self.frames = 0
        self.last_frame_at: float | None = None
        # Set when a frame moved a market that may be written at once (a quiet market, or under
        # `first-change` one past its interval): the flush loop, waiting for a later due time,
        # is to flush now. Cleared by `flush`.
        self.due_now = False

    # --- which markets ----------------------------------------------------------------------

    def follow(self, rows: Iterable[Market]) -> frozenset[str]:
        """Follow these open markets (and only these); the tokens to subscribe to."""
        wanted = {row.id: row for row in rows if row.status == "open"}
        for market_id in list(self._markets):
            if market_id not in wanted:
                self._unfollow(market_id)
        for market_id, row in wanted.items():
            if market_id in self._markets or not row.this_token_id or not row.that_token_id:
                continue
            followed = _Followed(
                market_id,
                row.source_id,
                MarketTokens(row.this_token_id, row.that_token_id),
                (row.this_odds, row.that_odds),
            )
            self._markets[market_id] = followed
            self._by_token[row.this_token_id] = followed
            self._by_token[row.that_token_id] = followed
            self._by_condition[row.source_id] = followed
            self.books.follow((row.this_token_id, row.that_token_id))
        return frozenset(self._by_token)

    def _unfollow(self, market_id: uuid.UUID) -> None:
        followed = self._markets.pop(market_id, None)
        if followed is None:
            return
        tokens = (followed.tokens.this_token_id, followed.tokens.that_token_id)
        for token in tokens:
            self._by_token.pop(token, None)
            self._snapshot_at.pop(token, None)
        self._by_condition.pop(followed.condition_id, None)
        self.books.forget(tokens)
        self._dirty.pop(market_id, None)
        self._upstream_ms.pop(market_id, None)
        self._written_slot.pop(market_id, None)
        self._changed_at.pop(market_id, None)
        self._gap.pop(market_id, None)

    def connected(self, tokens: Iterable[str]) -> None:
        """A connection (re)subscribed these tokens: their books start over from the snapshot
        it sends, so nothing from before the gap survives in them."""
        tokens = [token for token in tokens if token in self._by_token]
        self.books.forget(tokens)
        self.books.follow(tokens)
        for token in tokens:
            self._snapshot_at.pop(token, None)

    def live_markets(self, up_tokens: Iterable[str]) -> set[uuid.UUID]:
        """Markets the stream keeps current: both tokens on a connection that is up now, and
        both books whole since it (re)subscribed. The REST odds poll skips these."""
        up = set(up_tokens)
        return {
            market_id
            for market_id, followed in self._markets.items()
            if all(
                token in up and token in self._snapshot_at
                for token in (followed.tokens.this_token_id, followed.tokens.that_token_id)
            )
        }

    # --- frames -----------------------------------------------------------------------------

    def on_frame(self, text: str, received_at: float | None = None) -> None:
        received_at = self.clock() if received_at is None else received_at
        self.frames += 1
        self.last_frame_at = received_at
        parsed = parse_market_frame(text)
        for kind in parsed.skipped:
            self._bad(kind, text)
        for event in parsed.events:
            metrics.STREAM_FRAMES.labels(type(event).__name__).inc()
            if isinstance(event, PriceChange):
                for change in event.changes:
                    outcome = self.books.change_level(
                        change.asset_id, change.side, change.price, change.size, event.timestamp_ms
                    )
                    self._applied(change.asset_id, outcome, received_at, text, event.timestamp_ms)
            elif isinstance(event, BookSnapshot):
                outcome = self.books.replace_book(
                    event.asset_id, event.bids, event.asks, event.timestamp_ms, event.tick_size
                )
                if outcome is BookChange.APPLIED:
                    self._snapshot_at[event.asset_id] = received_at
                self._applied(event.asset_id, outcome, received_at, text, event.timestamp_ms)
            elif isinstance(event, LastTrade):
                outcome = self.books.record_trade(event.asset_id, event.price, event.timestamp_ms)
                self._applied(event.asset_id, outcome, received_at, text, event.timestamp_ms)
            elif isinstance(event, TickSizeChange):
                self.books.change_tick_size(event.asset_id, event.new_tick_size, event.timestamp_ms)
            elif isinstance(event, MarketResolved):
                self._resolved(event, text)
            elif isinstance(event, NewMarket):
                self._announced_market(event)
            elif isinstance(event, ControlText) and event.text not in ("NO NEW ASSETS",):
                self._bad("control_text", event.text)
            # BestBidAsk is a hint upstream itself calls unreliable: the books decide.
            elif isinstance(event, BestBidAsk):
                continue

    def _applied(
        self, token: str, outcome: BookChange, received_at: float, text: str, upstream_ms: int
    ) -> None:
        if outcome is BookChange.APPLIED:
            followed = self._by_token.get(token)
            if followed is not None:
                market_id = followed.market_id
                self._dirty.setdefault(market_id, received_at)
                before = self._changed_at.get(market_id)
                if before is None:
                    gap = self._gap[market_id] = math.inf
                elif received_at > before:  # both tokens of a market move in one frame
                    gap = self._gap[market_id] = received_at - before
                else:
                    gap = self._gap.get(market_id, math.inf)
                self._changed_at[market_id] = received_at
                if not self.due_now:
                    slot = self._written_slot.get(market_id)
                    self.due_now = self.pacing.due_at(slot, received_at, gap) <= received_at
                self._upstream_ms[followed.market_id] = upstream_ms
        elif outcome is BookChange.INVALID:
            self._bad(BadInput.BAD_PRICE, text)
        elif outcome is BookChange.STALE:
            metrics.STREAM_STALE_UPDATES.inc()
        # UNTRACKED (another market's token, or one side of a mirrored pair we do not follow)
        # and AWAITING_SNAPSHOT (a delta before the book came whole) are expected.

    def _resolved(self, event: MarketResolved, text: str) -> None:
        followed = self._by_condition.get(event.condition_id)
        if followed is None:
            return  # a market this server does not mirror (or one already settled)
        resolution = followed.tokens.resolution(event.winning_asset_id)
        if resolution is None:
            self._bad("unknown_winner", text)
            return
        self._resolutions[followed.market_id] = resolution

    def _announced_market(self, event: NewMarket) -> None:
        if self.discover is None or not event.active or len(event.token_ids) != 2:
            return
        if event.condition_id in self._announced or event.condition_id in self._by_condition:
            return
        self._announced[event.condition_id] = None
        if len(self._announced) > NEW_MARKET_REMEMBER:
            del self._announced[next(iter(self._announced))]
        self._discoveries.append(event.condition_id)

    def _bad(self, kind: str, text: str) -> None:
        self.bad_input[kind] += 1
        metrics.STREAM_BAD_INPUT.labels(str(kind)).inc()
        now = self.clock()
        last = self._bad_logged_at.get(kind)
        if last is None or now - last >= BAD_INPUT_LOG_INTERVAL_S:
            self._bad_logged_at[kind] = now
            logger.warning(
                "market channel: skipped bad input",
                extra={"kind": str(kind), "count": self.bad_input[kind], "frame": text[:200]},
            )

    # --- writes -----------------------------------------------------------------------------

    def pending(self) -> bool:
        return bool(self._dirty or self._resolutions or self._discoveries)

    def next_due(self) -> float | None:
        """When the earliest market still waiting for its interval may be written (clock time)."""
        if self._resolutions or self._discoveries:
            return self.clock()
        if not self._dirty:
            return None
        return min(self._due_at(market_id) for market_id in self._dirty)

    def _due_at(self, market_id: uuid.UUID) -> float:
        return self.pacing.due_at(
            self._written_slot.get(market_id),
            self._changed_at.get(market_id, -math.inf),
            self._gap.get(market_id, math.inf),
        )

    async def flush(self) -> FlushReport:
        """Write the odds that moved since the last flush in one statement, then announce them;
        settle the markets upstream resolved; ask about announced markets."""
        report = FlushReport()
        self.due_now = False
        resolutions, self._resolutions = self._resolutions, {}
        for market_id, resolution in resolutions.items():
            self._unfollow(market_id)
            try:
                await self.resolve(market_id, resolution)
                report.resolved += 1
            except Exception:
                logger.exception(
                    "market channel: resolution failed; the REST check will retry",
                    extra={"marketId": str(market_id)},
                )
        discoveries = self._discoveries[:]
        self._discoveries.clear()
        for condition_id in discoveries:
            if self.discover is None:
                break
            try:
                await self.discover(condition_id)
            except Exception as error:  # noqa: BLE001 - the market list poll will find it
                logger.warning(
                    "market channel: new market not mirrored yet",
                    extra={"conditionId": condition_id, "error": repr(error)},
                )
        # A market written less than an interval ago waits until the rule lets it go (its
        # latest value goes out then).
        now_s = self.clock()
        due_at = {market_id: self._due_at(market_id) for market_id in self._dirty}
        due = {
            market_id: seen_at
            for market_id, seen_at in self._dirty.items()
            if now_s >= due_at[market_id]
        }
        for market_id in due:
            del self._dirty[market_id]
        upstream_ms = {m: self._upstream_ms.pop(m) for m in due if m in self._upstream_ms}
        readings: list[tuple[uuid.UUID, Decimal, Decimal]] = []
        first_seen: dict[uuid.UUID, float] = {}
        for market_id, seen_at in due.items():
            followed = self._markets.get(market_id)
            if followed is None:
                continue
            odds = followed.tokens.odds(self.books)
            if odds is None or odds == followed.shown:
                continue
            readings.append((market_id, *odds))
            first_seen[market_id] = seen_at
        if not readings:
            return report
        now = datetime.now(UTC)
        try:
            changed = await market_store.record_odds(self.pool, readings, now)
        except Exception:
            # Put them back: the next flush writes the latest value (never an older one).
            for market_id, seen_at in first_seen.items():
                self._dirty.setdefault(market_id, seen_at)
                if market_id in upstream_ms:
                    self._upstream_ms.setdefault(market_id, upstream_ms[market_id])
            raise
        for market_id, this_odds, that_odds in readings:
            self._written_slot[market_id] = self.pacing.slot_of_write(due_at[market_id], now_s)
            followed = self._markets.get(market_id)
            if followed is not None:
                followed.shown = (this_odds, that_odds)
        report.written = len(readings)
        report.changed = len(changed)
        if changed:
            await self.listener.odds_changed(changed, now)
            pushed_at = self.clock()
            wall_ms = time.time() * 1000
            for row in changed:
                metrics.STREAM_PUSH_DELAY.observe(pushed_at - first_seen.get(row.id, pushed_at))
                if row.id in upstream_ms:
                    metrics.STREAM_ODDS_AGE.observe(max(0.0, wall_ms - upstream_ms[row.id]) / 1000)
        return report

    async def touch(self, market_ids: Sequence[uuid.UUID]) -> None:
        """The stream kept these markets current: their odds are as fresh as now."""
        if not market_ids:
            return
        now = datetime.now(UTC)
        await market_store.touch_odds(self.pool, market_ids, now)
        await self.listener.odds_touched(market_ids, now)
