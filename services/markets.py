"""Markets as the feed changes them: the one writer of a market's status, and the replay sink.

The live poller (services/market_feed.py) and a replayed timeline (feeds/replay.py) both come
here to close or resolve a market, so a market's status moves in one place: closes through
`close`, resolutions and removals through settlement. Every change is announced to the caches
of all nodes and to the market's subscribers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from feeds import replay
from game.markets import Resolution
from services.market_feed import PollReport
from services.notifier import Notifier, Row
from services.settlement import Settlement
from storage import markets as market_store

logger = logging.getLogger("thisthat.feed")


class Markets:
    def __init__(self, pool: asyncpg.Pool, notifier: Notifier, settlement: Settlement) -> None:
        self.pool = pool
        self.notifier = notifier
        self.settlement = settlement

    # What the poller reports (services.market_feed.FeedListener).
    async def markets_changed(self, rows: Sequence[Row]) -> None:
        await self.notifier.markets_changed(rows)

    async def odds_changed(self, rows: Sequence[Row], at: datetime) -> None:
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
                self.pool, [(row["id"], event.this_odds, event.that_odds)], now
            )
            if changed:
                await self.odds_changed(changed, now)
        elif isinstance(event, replay.CloseEvent):
            await self.close(row["id"])
        elif isinstance(event, replay.ResolveEvent):
            await self.resolve(row["id"], event.resolution)
        elif isinstance(event, replay.RemoveEvent):
            await self.resolve(row["id"], Resolution.CANCELLED)

    async def keep_replay_odds_fresh(self) -> PollReport:
        """A replayed market's odds are as fresh as the replay: every pass counts as a read."""
        report = PollReport("odds")
        ids = [row["id"] for row in await market_store.open_markets(self.pool)]
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
