"""Markets as the feed changes them: the live poller's listing and odds jobs, the replay sink,
and the closing of a market to bets.

A poller pass reads Polymarket (feeds/polymarket.py, the feed's one entry point), writes listings
and odds to PostgreSQL, and reports what changed to `Markets`; a replayed timeline
(feeds/replay.py) comes to `Markets` too. Closes go through `Markets.close`; resolutions and
removals are settled by services/settlement.py (`Settlement.resolve`, which commits the status
with the payouts in storage/settlement.py), whoever saw them: the resolution check there, the
market channel (services/live_odds.py) or the replay.
Every change is announced to the caches of all nodes and to the market's subscribers. Upstream
failures raise out of a pass after the client's retries; the runner counts them and tries again
next interval. Bad records are skipped and counted, never fatal.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from feeds import replay
from feeds.polymarket import PolymarketClient
from game.markets import Resolution
from services.notifier import Notifier
from storage import markets as market_store
from storage.rows import Market


class FeedListener(Protocol):
    async def markets_changed(self, rows: Sequence[Market]) -> None: ...
    async def odds_changed(self, rows: Sequence[Market], at: datetime) -> None: ...
    async def odds_touched(self, market_ids: Sequence[uuid.UUID], at: datetime) -> None: ...
    async def close(self, market_id: uuid.UUID) -> bool: ...


# Settles a market once (services/settlement.py `Settlement.resolve`); a repeat settles nothing.
Resolver = Callable[[uuid.UUID, Resolution], Awaitable[object]]


# Reads for the transport's market cache (server/fanout/market_cache.py): its misses and reloads.


async def find_market(pool: asyncpg.Pool, market_id: uuid.UUID) -> Market | None:
    return await market_store.get_market(pool, market_id)


async def find_markets(pool: asyncpg.Pool, market_ids: Sequence[uuid.UUID]) -> list[Market]:
    return await market_store.get_markets(pool, market_ids)


async def find_open_markets(pool: asyncpg.Pool) -> list[Market]:
    return await market_store.open_markets(pool)


async def listed_markets(pool: asyncpg.Pool, limit: int) -> list[Market]:
    """The markets a node keeps in memory: open ones first, then the newest closed."""
    return await market_store.all_markets(pool, limit)


@dataclass
class PollReport:
    """What one pass did, for logs, metrics, /readyz and the benchmark."""

    job: str
    seen: int = 0
    changed: int = 0
    skipped: int = 0
    requests: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class MarketPoller:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: PolymarketClient,
        listener: FeedListener,
        *,
        max_markets: int,
    ) -> None:
        self.pool = pool
        self.client = client
        self.listener = listener
        self.max_markets = max_markets
        # Condition ids of stored open markets missing from the latest listing: the resolution
        # job asks CLOB about them (a listing that omits a market does not cancel it).
        self.unlisted: set[str] = set()

    async def poll_markets(self) -> PollReport:
        report = PollReport("markets")
        requests_before = self.client.requests_made
        listings, skipped = await self.client.open_listings(self.max_markets)
        now = datetime.now(UTC)
        changed = await market_store.upsert_listings(self.pool, listings, now)
        listed = {listing.source_id for listing in listings}
        stored_open = await market_store.open_markets(self.pool)
        self.unlisted = {row.source_id for row in stored_open if row.source_id not in listed}
        if changed:
            await self.listener.markets_changed(changed)
        report.seen, report.changed, report.skipped = len(listings), len(changed), skipped
        report.requests = self.client.requests_made - requests_before
        report.extra["unlisted"] = len(self.unlisted)
        return report

    async def poll_odds(
        self,
        streamed: Collection[uuid.UUID] = frozenset(),
        fresh: Collection[uuid.UUID] = frozenset(),
    ) -> PollReport:
        """Midpoints for every open market's two tokens; Gamma prices where CLOB has none.

        Markets in `streamed` are left to the market channel (it moved them recently enough), and
        those in `fresh` (the channel keeps them current right now) count as read.
        """
        report = PollReport("odds")
        requests_before = self.client.requests_made
        open_rows = await market_store.open_markets(self.pool)
        polled = [row for row in open_rows if row.id not in streamed]
        by_source = {row.source_id: row.id for row in polled}
        odds = await self.client.read_odds(polled) if polled else {}
        readings = [(by_source[source_id], *pair) for source_id, pair in odds.items()]
        now = datetime.now(UTC)
        changed = await market_store.record_odds(self.pool, readings, now)
        open_ids = {row.id for row in open_rows}
        kept_fresh = [market_id for market_id in fresh if market_id in open_ids]
        if kept_fresh:
            # record_odds stamped what it read; what the stream keeps current is stamped here.
            await market_store.touch_odds(self.pool, kept_fresh, now)
        touched = [market_id for market_id, _, _ in readings] + kept_fresh
        if touched:
            await self.listener.odds_touched(touched, now)
        report.extra["streamed"] = len(open_rows) - len(polled)
        if changed:
            await self.listener.odds_changed(changed, now)
        report.seen, report.changed = len(readings), len(changed)
        report.skipped = len(polled) - len(readings)
        report.requests = self.client.requests_made - requests_before
        return report

    async def mirror_new_market(self, condition_id: str) -> bool:
        """A market announced upstream (the market channel's `new_market`) is stored when it
        passes the listing's filters and the mirror has room (`FEED_MAX_MARKETS`)."""
        if len(await market_store.open_markets(self.pool)) >= self.max_markets:
            return False
        listing = await self.client.listing(condition_id)
        if listing is None:
            return False
        changed = await market_store.upsert_listings(self.pool, [listing], datetime.now(UTC))
        if changed:
            logger.info(
                "new market mirrored from the market channel", extra={"sourceId": condition_id}
            )
            await self.listener.markets_changed(changed)
        return bool(changed)


logger = logging.getLogger("thisthat.feed")


class Markets:
    def __init__(self, pool: asyncpg.Pool, notifier: Notifier, resolve: Resolver) -> None:
        self.pool = pool
        self.notifier = notifier
        # Settlement.resolve (services/settlement.py): a replayed resolution settles as a live one.
        self.resolve = resolve

    # What the poller reports (services.markets.FeedListener).
    async def markets_changed(self, rows: Sequence[Market]) -> None:
        await self.notifier.markets_changed(rows)

    async def odds_changed(self, rows: Sequence[Market], at: datetime) -> None:
        await self.notifier.odds_changed(rows, at)

    async def odds_touched(self, market_ids: Sequence[uuid.UUID], at: datetime) -> None:
        await self.notifier.odds_touched(market_ids, at)

    async def close(self, market_id: uuid.UUID) -> bool:
        """Close an open market to bets (upstream stopped trading it); False if it was not open."""
        closed = await market_store.close_market(self.pool, market_id)
        if closed is None:
            return False
        await self.notifier.market_updated(closed)
        return True

    # The replay.
    async def apply_replay_event(self, event: replay.ReplayEvent) -> None:
        """Write one timeline event as the live feed would have, and announce it."""
        now = datetime.now(UTC)
        if isinstance(event, replay.MarketEvent):
            changed = await market_store.upsert_listings(self.pool, [event.listing], now)
            if changed:
                await self.markets_changed(changed)
            return
        if isinstance(event, replay.FrameEvent):
            return  # a market channel frame: the live odds apply it (services/live_odds.py)
        row = await market_store.get_by_source_id(self.pool, event.source_id)
        if row is None:
            logger.warning(
                "replay event for an unknown market", extra={"sourceId": event.source_id}
            )
            return
        if isinstance(event, replay.OddsEvent):
            changed = await market_store.record_odds(
                self.pool, [(row.id, event.this_odds, event.that_odds)], now
            )
            if changed:
                await self.odds_changed(changed, now)
        elif isinstance(event, replay.CloseEvent):
            await self.close(row.id)
        elif isinstance(event, replay.ResolveEvent):
            await self.resolve(row.id, event.resolution)
        elif isinstance(event, replay.RemoveEvent):
            await self.resolve(row.id, Resolution.CANCELLED)

    async def replay_first_pass(
        self, events: Sequence[replay.ReplayEvent], start_over: bool
    ) -> int:
        """0, or when starting over the first pass whose market ids this database never saw.

        Not starting over, markets the timeline already played here stay as they ended (a
        replay never reopens a settled market); one log line says so, and how to start over.
        """
        if not start_over:
            played = 0
            listed = [event for event in events if isinstance(event, replay.MarketEvent)]
            for event in listed:
                row = await market_store.get_by_source_id(self.pool, event.source_id)
                played += row is not None and row.status != "open"
            if played:
                logger.warning(
                    "replay: %d of the timeline's %d markets were already played in this "
                    "database and stay as they ended; to play the timeline again as new "
                    "markets, restart with `thisthat serve --reset-replay`",
                    played,
                    len(listed),
                )
            return 0
        known = {event.source_id for event in events if isinstance(event, replay.MarketEvent)}
        stored = await market_store.source_ids_from(self.pool, sorted(known))
        passes = [replay.pass_of(source_id) for source_id in stored]
        first = max(passes, default=-1) + 1
        logger.info("replay starts over as new markets", extra={"pass": first})
        return first
