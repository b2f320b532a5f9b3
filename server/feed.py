"""Runs the feed on exactly one node: a Redis lease elects the poller, the jobs run while it holds it.

FEED=polymarket polls the live APIs, FEED=replay:<file> plays a timeline into the same storage
and pushes, FEED=off runs nothing. Every node reports the feed's health in /readyz from Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
import orjson
import redis.asyncio as redis
from aiohttp import web

from feeds import replay
from feeds.poller import MarketPoller, PollReport
from feeds.polymarket import PolymarketClient
from game.markets import Resolution
from server import appkeys, metrics
from server.jobs import spawn, stop_if_cancelled
from server.market_cache import MarketCache, is_stale, publish_changes
from server.rest import READINESS_CHECKS
from server.rooms import market_room
from server.views import market_view
from storage import keys
from storage import markets as market_store

logger = logging.getLogger("thisthat.feed")

# Renew only if we still own the lease; answers 1 when renewed.
RENEW_LEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_LEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """A lock with expiry in Redis: held while renewed, taken over by another node when it lapses."""

    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renew = client.register_script(RENEW_LEASE)
        self._release = client.register_script(RELEASE_LEASE)

    async def acquire(self) -> bool:
        return bool(await self.client.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.owner, self.ttl_ms]))

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.owner])


class ServerFeedListener:
    """What the server does when the feed changes markets: cache, announce to nodes, push to sockets."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    @property
    def cache(self) -> MarketCache:
        return self.app[appkeys.MARKET_CACHE]

    async def markets_changed(self, rows: Sequence[asyncpg.Record]) -> None:
        self.cache.apply(rows)
        await publish_changes(self.app[appkeys.REDIS], self.cache, [row["id"] for row in rows])

    async def odds_changed(self, rows: Sequence[asyncpg.Record], at: datetime) -> None:
        self.cache.apply(rows)
        await publish_changes(self.app[appkeys.REDIS], self.cache, [row["id"] for row in rows])
        pushes = self.app[appkeys.PUSHES]
        for row in rows:
            # Odds are state: only changes are pushed; a (re)subscribe gets the snapshot.
            pushes.emit(
                "odds",
                {
                    "marketId": str(row["id"]),
                    "thisOdds": row["this_odds"],
                    "thatOdds": row["that_odds"],
                    "at": at,
                },
                market_room(row["id"]),
            )
        metrics.ODDS_TICKS.inc(len(rows))

    async def odds_touched(self, market_ids: Sequence[uuid.UUID], at: datetime) -> None:
        # Unchanged odds were read again: they are fresh, here and (after a reload) on other nodes.
        self.cache.touch(market_ids, at)
        await publish_changes(self.app[appkeys.REDIS], self.cache, market_ids)

    async def market_closed(self, row: asyncpg.Record) -> None:
        self.cache.apply([row])
        await publish_changes(self.app[appkeys.REDIS], self.cache, [row["id"]])
        self.app[appkeys.PUSHES].emit(
            "market:update", {"market": market_view(row)}, market_room(row["id"])
        )

    async def market_resolved(self, row: asyncpg.Record, resolution: Resolution) -> None:
        from server.settlement import settle_and_announce

        await settle_and_announce(self.app, row["id"], resolution)


class FeedStatus:
    """Per-job health, kept in Redis so /readyz on any node can report the poller's state."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    async def record(
        self, job: str, ok: bool, report: PollReport | None = None, error: str | None = None
    ) -> None:
        raw = await self.client.hget(keys.FEED_STATUS, job)
        state: dict[str, Any] = orjson.loads(raw) if raw else {"consecutiveFailures": 0}
        if ok:
            state["lastSuccessAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            state["consecutiveFailures"] = 0
            state.pop("lastError", None)
            if report is not None:
                state["last"] = {
                    "seen": report.seen,
                    "changed": report.changed,
                    "skipped": report.skipped,
                    "requests": report.requests,
                    "seconds": round(report.seconds, 3),
                }
        else:
            state["consecutiveFailures"] = int(state.get("consecutiveFailures", 0)) + 1
            state["lastError"] = error
        await self.client.hset(keys.FEED_STATUS, job, orjson.dumps(state))

    async def read(self) -> dict[str, Any]:
        raw = await self.client.hgetall(keys.FEED_STATUS)
        return {str(job): orjson.loads(value) for job, value in raw.items()}


async def run_every(
    name: str,
    interval_s: float,
    job: Callable[[], Awaitable[PollReport]],
    status: FeedStatus,
    *,
    first_after_s: float = 0.0,
) -> None:
    """Run one job forever at its interval; a failure is logged, counted, and retried next time."""
    await asyncio.sleep(first_after_s)
    while True:
        started = time.perf_counter()
        try:
            report = await job()
            report.seconds = time.perf_counter() - started
            await status.record(name, True, report)
            metrics.FEED_POLLS.labels(name, "ok").inc()
            metrics.FEED_POLL_SECONDS.labels(name).observe(report.seconds)
            metrics.FEED_SKIPPED.inc(report.skipped)
            logger.info(
                "feed poll",
                extra={
                    "job": name,
                    "seen": report.seen,
                    "changed": report.changed,
                    "skipped": report.skipped,
                    "requests": report.requests,
                    "seconds": round(report.seconds, 3),
                },
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - upstream or database trouble must not kill the feed
            stop_if_cancelled()
            metrics.FEED_POLLS.labels(name, "error").inc()
            metrics.FEED_UPSTREAM_ERRORS.labels(type(error).__name__).inc()
            logger.warning("feed poll failed", extra={"job": name, "error": repr(error)})
            try:
                await status.record(name, False, error=repr(error)[:300])
            except Exception:  # noqa: BLE001 - Redis down too; the log line above says enough
                logger.debug("could not record feed status", exc_info=True)
        await asyncio.sleep(max(0.0, interval_s - (time.perf_counter() - started)))


async def replay_sink_for(
    app: web.Application, listener: ServerFeedListener
) -> Callable[[replay.ReplayEvent], Awaitable[None]]:
    pool = app[appkeys.DB_POOL]

    async def sink(event: replay.ReplayEvent) -> None:
        now = datetime.now(UTC)
        if isinstance(event, replay.MarketEvent):
            changed = await market_store.upsert_listings(pool, [event.listing], now)
            if changed:
                await listener.markets_changed(changed)
            return
        row = await market_store.get_by_source_id(pool, event.source_id)
        if row is None:
            logger.warning(
                "replay event for an unknown market", extra={"sourceId": event.source_id}
            )
            return
        if isinstance(event, replay.OddsEvent):
            changed = await market_store.record_odds(
                pool, [(row["id"], event.this_odds, event.that_odds)], now
            )
            if changed:
                await listener.odds_changed(changed, now)
        elif isinstance(event, replay.CloseEvent):
            closed = await market_store.close_market(pool, row["id"])
            if closed is not None:
                await listener.market_closed(closed)
        elif isinstance(event, replay.ResolveEvent):
            await listener.market_resolved(row, event.resolution)
        elif isinstance(event, replay.RemoveEvent):
            await listener.market_resolved(row, Resolution.CANCELLED)

    return sink


async def keep_replay_odds_fresh(app: web.Application, listener: ServerFeedListener) -> PollReport:
    """A replayed market's odds are as fresh as the replay: every pass counts as a read."""
    report = PollReport("odds")
    ids = [row["id"] for row in await market_store.open_markets(app[appkeys.DB_POOL])]
    now = datetime.now(UTC)
    await market_store.touch_odds(app[appkeys.DB_POOL], ids, now)
    if ids:
        await listener.odds_touched(ids, now)
    report.seen = len(ids)
    return report


async def lead(app: web.Application, lease: Lease, http: aiohttp.ClientSession) -> None:
    """Wait for the lease, run the jobs while it is held, stop them when it is lost."""
    settings = app[appkeys.SETTINGS]
    status = FeedStatus(app[appkeys.REDIS])
    listener = ServerFeedListener(app)
    renew_every = lease.ttl_ms / 1000 / 3
    while True:
        try:
            acquired = await lease.acquire()
        except Exception:  # noqa: BLE001 - Redis down: keep serving, try again
            stop_if_cancelled()
            metrics.REDIS_ERRORS.labels("feed_lease").inc()
            logger.warning("feed lease: redis unreachable", exc_info=True)
            acquired = False
        if not acquired:
            await asyncio.sleep(renew_every)
            continue
        logger.info(
            "this node now runs the feed", extra={"owner": lease.owner, "feed": settings.feed}
        )
        jobs = await _start_jobs(app, status, listener, http)
        try:
            while True:
                await asyncio.sleep(renew_every)
                try:
                    if not await lease.renew():
                        logger.warning("feed lease lost; stopping the feed on this node")
                        break
                except Exception:  # noqa: BLE001
                    stop_if_cancelled()
                    logger.warning(
                        "feed lease renewal failed; stopping the feed on this node", exc_info=True
                    )
                    break
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)


async def _start_jobs(
    app: web.Application,
    status: FeedStatus,
    listener: ServerFeedListener,
    http: aiohttp.ClientSession,
) -> list[asyncio.Task[None]]:
    settings = app[appkeys.SETTINGS]
    if settings.feed.startswith("replay:"):
        events = replay.load_timeline(Path(settings.feed.removeprefix("replay:")))
        sink = await replay_sink_for(app, listener)

        async def play() -> PollReport:
            delivered = await replay.play(
                events, settings.feed_replay_speed, sink, loop_forever=settings.feed_replay_loop
            )
            return PollReport("replay", seen=delivered)

        async def replay_forever() -> None:
            report = await play()
            await status.record("replay", True, report)
            logger.info("replay finished", extra={"events": report.seen})

        return [
            asyncio.create_task(replay_forever(), name="feed-replay"),
            asyncio.create_task(
                run_every(
                    "odds",
                    settings.feed_odds_interval_s,
                    lambda: keep_replay_odds_fresh(app, listener),
                    status,
                ),
                name="feed-odds",
            ),
        ]
    client = PolymarketClient(
        http,
        settings.polymarket_gamma_url,
        settings.polymarket_base_url,
        settings.polymarket_api_key,
        timeout_s=settings.feed_timeout_s,
    )
    poller = MarketPoller(
        app[appkeys.DB_POOL], client, listener, max_markets=settings.feed_max_markets
    )
    # The odds and resolution jobs need the list first; run one listing pass before starting them.
    try:
        report = await poller.poll_markets()
        await status.record("markets", True, report)
    except Exception as error:  # noqa: BLE001
        await status.record("markets", False, error=repr(error)[:300])
        if not settings.is_production:
            logger.error(
                "POLYMARKET IS NOT REACHABLE (%s). Markets already stored keep being served with "
                "aging odds. To play offline, run with FEED=replay:feeds/timelines/sample.jsonl",
                repr(error),
            )
    return [
        asyncio.create_task(
            run_every(
                "markets",
                settings.feed_markets_interval_s,
                poller.poll_markets,
                status,
                first_after_s=settings.feed_markets_interval_s,
            ),
            name="feed-markets",
        ),
        asyncio.create_task(
            run_every("odds", settings.feed_odds_interval_s, poller.poll_odds, status),
            name="feed-odds",
        ),
        asyncio.create_task(
            run_every(
                "resolution", settings.feed_resolution_interval_s, poller.poll_resolutions, status
            ),
            name="feed-resolution",
        ),
    ]


async def feed_readiness(app: web.Application) -> tuple[bool, Any]:
    """The feed never makes a node unready (markets keep being served); it reports how it is doing."""
    settings = app[appkeys.SETTINGS]
    cache = app[appkeys.MARKET_CACHE]
    now = datetime.now(UTC)
    stale = sum(1 for row in cache.open_rows() if is_stale(row, now, settings.odds_max_age_s))
    jobs = await FeedStatus(app[appkeys.REDIS]).read()
    return True, {
        "mode": settings.feed.split(":")[0],
        "jobs": jobs,
        "staleOdds": stale,
        "openMarkets": len(cache.open_rows()),
    }


async def feed_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    app[READINESS_CHECKS]["feed"] = feed_readiness
    if settings.feed == "off":
        yield
        return
    lease = Lease(app[appkeys.REDIS], keys.FEED_LOCK, settings.feed_lease_ttl_s)
    async with aiohttp.ClientSession() as http:
        leader = await spawn(app, lead(app, lease, http), name="feed")
        yield
        await leader.close()
        try:
            await lease.release()
        except Exception:  # noqa: BLE001 - the lease expires by itself
            logger.debug("lease release failed", exc_info=True)
