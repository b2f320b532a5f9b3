"""The market channel on the feed node: connections kept up (feeds/market_stream.py), frames into
the live odds (services/live_odds.py), subscriptions following the open markets, and the odds
written and pushed at most once per market per ODDS_PUSH_MIN_INTERVAL_MS.

The REST polls stay as the safety net (services/markets.py): the market list every 5 minutes,
the resolution check every minute, and odds for the markets the stream has not kept current for
FEED_STREAM_STALE_S. A stream outage degrades to polling, never to no odds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Final

import aiohttp
from aiohttp import web

from feeds.market_stream import MarketStream
from server.application.services import SERVICES
from server.runtime import metrics
from server.runtime.jobs import stop_if_cancelled
from server.runtime.resources import DB_POOL
from server.settings import SETTINGS
from services.live_odds import LiveOdds
from services.markets import MarketPoller, find_open_markets
from storage.feed_status import FeedStatus

logger = logging.getLogger("thisthat.feed")

# How often the subscriptions are matched to the open markets, and the gauges refreshed.
FOLLOW_INTERVAL_S: Final = 2.0
# A flush waits this long after the first change, so changes arriving together share a write,
# and statements are at least this far apart, so a busy channel costs a bounded write rate.
GATHER_S: Final = 0.002
MIN_WRITE_GAP_S: Final = 0.02


class OddsStream:
    """The stream's state on the node that holds the feed lease, for the jobs and /readyz."""

    def __init__(
        self,
        live: LiveOdds,
        stream: MarketStream,
        *,
        stale_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.live = live
        self.stream = stream
        self.stale_s = stale_s
        self.clock = clock
        self.changed = asyncio.Event()
        # A frame moved a market that is due at once: the flush loop stops waiting for later.
        self.due_now = asyncio.Event()
        self._live_since: dict[uuid.UUID, float] = {}  # market -> last time it was seen live
        self.started_at = clock()

    def on_frame(self, text: str, received_at: float) -> None:
        self.live.on_frame(text, received_at)
        if self.live.pending():
            self.changed.set()
        if self.live.due_now:
            self.due_now.set()

    def on_connected(self, tokens: frozenset[str]) -> None:
        self.live.connected(tokens)

    def live_markets(self) -> set[uuid.UUID]:
        live = self.live.live_markets(self.stream.subscribed_tokens)
        now = self.clock()
        for market_id in live:
            self._live_since[market_id] = now
        return live

    def streamed_markets(self) -> set[uuid.UUID]:
        """Markets the REST odds poll leaves alone: live within the last FEED_STREAM_STALE_S."""
        self.live_markets()
        now = self.clock()
        return {
            market_id for market_id, seen in self._live_since.items() if now - seen < self.stale_s
        }

    def status(self) -> dict[str, Any]:
        stream = self.stream
        return {
            "connections": stream.shard_count,
            "connectionsUp": stream.connections_up,
            "subscribedTokens": len(stream.subscribed_tokens),
            "reconnects": stream.reconnects,
            "liveMarkets": len(self.live_markets()),
            "frames": self.live.frames,
            "badInput": dict(self.live.bad_input),
        }

    async def follow_markets(self, poller: MarketPoller, status: FeedStatus) -> None:
        """Subscriptions follow the open markets; markets that open or close change them. The
        stream's state goes to the feed status (every node's /readyz shows it)."""
        while True:
            try:
                rows = await find_open_markets(poller.pool)
                tokens = self.live.follow(rows)
                if tokens != self.stream.tokens:
                    await self.stream.set_tokens(tokens)
                metrics.STREAM_CONNECTIONS.set(self.stream.shard_count)
                metrics.STREAM_CONNECTIONS_UP.set(self.stream.connections_up)
                metrics.STREAM_TOKENS.set(len(self.stream.subscribed_tokens))
                metrics.STREAM_RECONNECTS.set(self.stream.reconnects)
                metrics.STREAM_LIVE_MARKETS.set(len(self.live_markets()))
                up = self.stream.connections_up == self.stream.shard_count
                await status.record(
                    "stream",
                    up,
                    error=None if up else "market channel connections down; polling instead",
                    detail=self.status(),
                )
            except Exception as error:  # noqa: BLE001 - the database may be away; try again
                stop_if_cancelled()
                logger.warning(
                    "market channel: could not follow markets", extra={"error": repr(error)}
                )
            await asyncio.sleep(FOLLOW_INTERVAL_S)

    async def flush_forever(self) -> None:
        """Write and push what moved as soon as each market's pacing allows; a failed write
        keeps the latest values for the next try."""
        while True:
            await self.changed.wait()
            await asyncio.sleep(GATHER_S)
            self.changed.clear()
            self.due_now.clear()
            try:
                await self.live.flush()
            except Exception as error:  # noqa: BLE001 - the database may be away; retried
                stop_if_cancelled()
                logger.warning("market channel: odds not written", extra={"error": repr(error)})
                await asyncio.sleep(1.0)
            await asyncio.sleep(MIN_WRITE_GAP_S)
            due = self.live.next_due()
            if due is None:
                continue
            # Until the earliest market waiting falls due, unless a frame makes one due sooner
            # (a quiet market's change, or under `first-change` a change past its interval).
            wait = due - self.clock()
            if wait > 0 and not self.due_now.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self.due_now.wait()
            self.changed.set()


def stream_jobs(
    app: web.Application, http: aiohttp.ClientSession, poller: MarketPoller, status: FeedStatus
) -> tuple[OddsStream, dict[str, Callable[[], Coroutine[Any, Any, None]]]]:
    """The stream and the coroutines that run it while this node holds the feed lease."""
    settings = app[SETTINGS]
    markets = app[SERVICES].markets
    live = LiveOdds(
        app[DB_POOL],
        markets,
        app[SERVICES].settlement.resolve,
        discover=poller.mirror_new_market,
        push_interval_s=settings.odds_push_min_interval_ms / 1000,
        push_pacing=settings.odds_push_pacing,
    )
    holder: list[OddsStream] = []

    def on_frame(text: str, received_at: float) -> None:
        holder[0].on_frame(text, received_at)

    def on_connected(tokens: frozenset[str]) -> None:
        holder[0].on_connected(tokens)

    stream = MarketStream(
        settings.polymarket_ws_url,
        http,
        on_frame,
        tokens_per_connection=settings.feed_stream_tokens_per_connection,
        on_connected=on_connected,
    )
    odds_stream = OddsStream(live, stream, stale_s=settings.feed_stream_stale_s)
    holder.append(odds_stream)

    async def run_stream() -> None:
        await stream.start()
        try:
            await asyncio.Event().wait()
        finally:
            await stream.close()

    return odds_stream, {
        "stream": run_stream,
        "stream-follow": lambda: odds_stream.follow_markets(poller, status),
        "stream-flush": odds_stream.flush_forever,
    }
