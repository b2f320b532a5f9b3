"""Markets as the feed changes them: the live poller's three jobs, the replay sink, and the one
writer of a market's status.

A poller pass reads Polymarket (feeds/), writes listings and odds to PostgreSQL, and reports what
changed to `Markets`; a replayed timeline (feeds/replay.py) comes to `Markets` too. Closes go
through `Markets.close` and resolutions or removals through settlement, so a market's status
moves in one place. Every change is announced to the caches of all nodes and to the market's
subscribers. Upstream failures raise out of a pass after the client's retries; the runner counts
them and tries again next interval. Bad records are skipped and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import asyncpg

from feeds import replay
from feeds.parsing import (
    ParseStats,
    complete_odds,
    midpoint_value,
    parse_gamma_markets,
    resolution_from_clob,
    resolution_from_gamma,
)
from feeds.polymarket import PolymarketClient
from game.markets import Resolution, UpstreamState
from services.notifier import Notifier
from services.settlement import Settlement
from storage import markets as market_store
from storage.rows import Market

RESOLUTION_CONCURRENCY = 8


class FeedListener(Protocol):
    async def markets_changed(self, rows: Sequence[Market]) -> None: ...
    async def odds_changed(self, rows: Sequence[Market], at: datetime) -> None: ...
    async def odds_touched(self, market_ids: Sequence[uuid.UUID], at: datetime) -> None: ...
    async def close(self, market_id: uuid.UUID) -> bool: ...
    async def resolve(self, market_id: uuid.UUID, resolution: Resolution) -> None: ...


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
        raw = await self.client.list_open_markets(self.max_markets)
        stats = ParseStats()
        listings = parse_gamma_markets(raw, stats)
        now = datetime.now(UTC)
        changed = await market_store.upsert_listings(self.pool, listings, now)
        listed = {listing.source_id for listing in listings}
        stored_open = await market_store.open_markets(self.pool)
        self.unlisted = {row.source_id for row in stored_open if row.source_id not in listed}
        if changed:
            await self.listener.markets_changed(changed)
        report.seen, report.changed, report.skipped = len(listings), len(changed), stats.skipped
        report.requests = self.client.requests_made - requests_before
        report.extra["unlisted"] = len(self.unlisted)
        return report

    async def poll_odds(self) -> PollReport:
        """Midpoints for every open market's two tokens; Gamma prices where CLOB has none."""
        report = PollReport("odds")
        requests_before = self.client.requests_made
        open_rows = await market_store.open_markets(self.pool)
        tokens = [token for row in open_rows for token in (row.this_token_id, row.that_token_id)]
        midpoints = await self.client.get_midpoints(tokens) if tokens else {}
        readings: list[tuple[uuid.UUID, Decimal, Decimal]] = []
        missing: list[Market] = []
        for row in open_rows:
            odds = complete_odds(
                midpoint_value(midpoints.get(row.this_token_id)),
                midpoint_value(midpoints.get(row.that_token_id)),
            )
            if odds is None:
                missing.append(row)
            else:
                readings.append((row.id, *odds))
        if missing:
            readings.extend(await self._gamma_prices(missing))
        now = datetime.now(UTC)
        changed = await market_store.record_odds(self.pool, readings, now)
        if readings:
            await self.listener.odds_touched([market_id for market_id, _, _ in readings], now)
        if changed:
            await self.listener.odds_changed(changed, now)
        report.seen, report.changed = len(readings), len(changed)
        report.skipped = len(open_rows) - len(readings)
        report.requests = self.client.requests_made - requests_before
        return report

    async def _gamma_prices(
        self, rows: Sequence[Market]
    ) -> list[tuple[uuid.UUID, Decimal, Decimal]]:
        by_source = {row.source_id: row for row in rows}
        readings = []
        for raw in await self.client.get_gamma_markets(list(by_source)):
            state = resolution_from_gamma(raw)
            if state is None or state.closed or state.this_odds is None or state.that_odds is None:
                continue
            row = by_source.get(state.source_id)
            if row is not None:
                readings.append((row.id, state.this_odds, state.that_odds))
        return readings

    async def poll_resolutions(self) -> PollReport:
        """Markets past their end, closed, or no longer listed: ask CLOB (then Gamma) how they ended."""
        report = PollReport("resolution")
        requests_before = self.client.requests_made
        candidates = await market_store.markets_to_resolve(
            self.pool, datetime.now(UTC), sorted(self.unlisted)
        )
        semaphore = asyncio.Semaphore(RESOLUTION_CONCURRENCY)

        async def check(row: Market) -> bool:
            async with semaphore:
                state = await self._upstream_state(row.source_id)
            return await self._apply_state(row, state)

        outcomes = await asyncio.gather(*(check(row) for row in candidates), return_exceptions=True)
        for row, outcome in zip(candidates, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                report.skipped += 1
                logger.warning(
                    "resolution check failed",
                    extra={"marketId": str(row.id), "error": repr(outcome)},
                )
            elif outcome:
                report.changed += 1
        report.seen = len(candidates)
        report.requests = self.client.requests_made - requests_before
        return report

    async def _upstream_state(self, source_id: str) -> UpstreamState | None:
        """CLOB first; Gamma when CLOB does not know the market. None means gone from both."""
        clob = await self.client.get_clob_market(source_id)
        state = resolution_from_clob(clob) if clob is not None else None
        if state is not None and (state.resolution is not None or not state.closed):
            return state
        gamma = await self.client.get_gamma_markets([source_id])
        for raw in gamma:
            gamma_state = resolution_from_gamma(raw)
            # Prefer Gamma's view only when it knows more (a resolution CLOB has not shown yet).
            known = gamma_state is not None and gamma_state.source_id == source_id
            if known and (state is None or gamma_state.resolution is not None):  # type: ignore[union-attr]
                return gamma_state
        return state

    async def _apply_state(self, row: Market, state: UpstreamState | None) -> bool:
        if state is None:
            # Confirmed gone upstream (neither CLOB nor Gamma knows it): void, refund every stake.
            logger.warning("market gone upstream; cancelling", extra={"marketId": str(row.id)})
            await self.listener.resolve(row.id, Resolution.CANCELLED)
            return True
        if state.resolution is not None:
            await self.listener.resolve(row.id, state.resolution)
            return True
        if state.closed and row.status == "open":
            return await self.listener.close(row.id)
        return False


logger = logging.getLogger("thisthat.feed")


class Markets:
    def __init__(self, pool: asyncpg.Pool, notifier: Notifier, settlement: Settlement) -> None:
        self.pool = pool
        self.notifier = notifier
        self.settlement = settlement

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

    async def resolve(self, market_id: uuid.UUID, resolution: Resolution) -> None:
        await self.settlement.settle(market_id, resolution)

    # The replay.
    async def apply_replay_event(self, event: replay.ReplayEvent) -> None:
        """Write one timeline event as the live feed would have, and announce it."""
        now = datetime.now(UTC)
        if isinstance(event, replay.MarketEvent):
            changed = await market_store.upsert_listings(self.pool, [event.listing], now)
            if changed:
                await self.markets_changed(changed)
            return
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

    async def keep_replay_odds_fresh(self) -> PollReport:
        """A replayed market's odds are as fresh as the replay: every pass counts as a read."""
        report = PollReport("odds")
        ids = [row.id for row in await market_store.open_markets(self.pool)]
        now = datetime.now(UTC)
        await market_store.touch_odds(self.pool, ids, now)
        if ids:
            await self.odds_touched(ids, now)
        report.seen = len(ids)
        return report

    async def replay_first_pass(
        self, events: Sequence[replay.ReplayEvent], start_over: bool
    ) -> int:
        """0, or when starting over the first pass whose market ids this database never saw."""
        if not start_over:
            return 0
        known = {event.source_id for event in events if isinstance(event, replay.MarketEvent)}
        stored = await market_store.source_ids_from(self.pool, sorted(known))
        passes = [replay.pass_of(source_id) for source_id in stored]
        first = max(passes, default=-1) + 1
        logger.info("replay starts over as new markets", extra={"pass": first})
        return first
