"""Runs the feed on exactly one node: leader election (a Redis lease, storage/feed_status.py) and
the schedule of the feed jobs while this node holds it.

FEED=polymarket runs the poller (services/markets.py) and, with FEED_STREAM, the market channel
(server/mirror/stream.py); FEED=replay:<file> plays a timeline
through the same use cases (services/markets.py), FEED=off runs nothing. Every node reports the
feed's health in /readyz from Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
import redis.asyncio as redis
from aiohttp import web

from feeds import replay
from feeds.polymarket import PolymarketClient
from server.application.services import SERVICES
from server.fanout.market_cache import MARKET_CACHE, is_stale
from server.mirror.stream import OddsStream, stream_jobs
from server.runtime import metrics
from server.runtime.jobs import spawn, stop_if_cancelled
from server.runtime.readiness import READINESS_CHECKS
from server.runtime.resources import DB_POOL, REDIS
from server.settings import SETTINGS
from services.live_odds import LiveOdds
from services.markets import MarketPoller, PollReport, find_open_markets
from services.settlement import ResolutionCheck
from storage import keys
from storage.feed_status import FeedStatus, Lease

logger = logging.getLogger("thisthat.feed")


class Mirror:
    """What this node's feed is doing now: the market channel while it leads, else None."""

    def __init__(self) -> None:
        self.stream: OddsStream | None = None


MIRROR: Final = web.AppKey("mirror", Mirror)
# Set by `thisthat serve --reset-replay`: the replay starts its timeline over as new markets.
RESET_REPLAY: Final = web.AppKey("reset_replay", bool)
# Errors a replay event waits out (the database or Redis is away), retrying it until it lands.
TRANSIENT_ERRORS: Final = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    redis.ConnectionError,
    redis.TimeoutError,
)
REPLAY_RETRY_MAX_S: Final = 5.0


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


def patient(sink: replay.ReplaySink, status: FeedStatus) -> replay.ReplaySink:
    """The sink, retrying an event while the database or Redis is away, with a log line when it
    goes and when it is back; any other error ends the replay (and is reported as its death)."""

    async def deliver(event: replay.ReplayEvent) -> None:
        failures = 0
        while True:
            try:
                await sink(event)
            except TRANSIENT_ERRORS as error:
                stop_if_cancelled()
                failures += 1
                logger.warning(
                    "replay: storage unreachable, retrying the event",
                    extra={"error": repr(error), "attempt": failures, "at": event.at},
                )
                await _quietly(status.record("replay", False, error=repr(error)[:300]))
                await asyncio.sleep(min(REPLAY_RETRY_MAX_S, 0.25 * 2**failures))
                continue
            if failures:
                logger.info("replay: storage is back, replay continues", extra={"at": event.at})
            return

    return deliver


def replay_sink(app: web.Application) -> replay.ReplaySink:
    """Timeline events through the same use cases as the live feed: market channel frames into
    live odds (written and pushed at once; a replay's pace is its own), the rest into Markets."""
    markets = app[SERVICES].markets
    live = LiveOdds(app[DB_POOL], markets, app[SERVICES].settlement.resolve)

    async def deliver(event: replay.ReplayEvent) -> None:
        if not isinstance(event, replay.FrameEvent):
            await markets.apply_replay_event(event)
            return
        # The markets a frame may move are the open ones now (the timeline opens them as it goes).
        live.follow(await find_open_markets(app[DB_POOL]))
        live.on_frame(event.text)
        await live.flush()

    return deliver


async def _keep_lease(lease: Lease, every_s: float, lost: asyncio.Event) -> None:
    """Renew the lease every `every_s` until it is lost (then set `lost`)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            if not await lease.renew():
                logger.warning("feed lease lost; stopping the feed on this node")
                break
        except Exception:  # noqa: BLE001 - Redis away: the feed stops here, another node takes it
            stop_if_cancelled()
            logger.warning(
                "feed lease renewal failed; stopping the feed on this node", exc_info=True
            )
            break
    lost.set()


async def lead(app: web.Application, lease: Lease, http: aiohttp.ClientSession) -> None:
    """Wait for the lease, run the jobs while it is held, stop them when it is lost."""
    settings = app[SETTINGS]
    status = FeedStatus(app[REDIS])
    renew_every = lease.ttl_ms / 1000 / 3
    # The replay pass chosen the first time this node leads; taking the lease again reuses it.
    chosen_pass: dict[str, int] = {}
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
        jobs: list[asyncio.Task[None]] = []
        # Renewed by a task of its own: nothing the jobs (or their start) wait for can delay it.
        lost = asyncio.Event()
        keeper = asyncio.ensure_future(_keep_lease(lease, renew_every, lost))
        try:
            try:
                jobs = await _start_jobs(app, status, http, chosen_pass)
            except Exception as error:  # noqa: BLE001 - reported on /readyz; the node keeps serving
                stop_if_cancelled()
                logger.error(
                    "the feed could not start", extra={"error": repr(error)}, exc_info=True
                )
                await _quietly(status.ended("feed", repr(error)[:300]))
            while not lost.is_set():
                running = [job for job in jobs if not job.done()]
                if running:
                    ended, _ = await asyncio.wait(
                        running, timeout=renew_every, return_when=asyncio.FIRST_COMPLETED
                    )
                    for job in ended:
                        await _job_ended(job, status)
                else:
                    await asyncio.sleep(renew_every)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await _stop_jobs(jobs)
            app[MIRROR].stream = None
            # Only the lease holder reports the stream; a node that stopped leading reports none.
            for gauge in (
                metrics.STREAM_CONNECTIONS,
                metrics.STREAM_CONNECTIONS_UP,
                metrics.STREAM_TOKENS,
                metrics.STREAM_LIVE_MARKETS,
            ):
                gauge.set(0)


async def _stop_jobs(jobs: list[asyncio.Task[None]], attempts: int = 3) -> None:
    """Cancel the feed's jobs and wait for them, boundedly: a cancel that lands while a library's
    own timeout fires can be swallowed, so a job still running is cancelled again, and one that
    outlives every attempt is left to end by itself rather than holding up the shutdown."""
    for _ in range(attempts):
        running = [job for job in jobs if not job.done()]
        if not running:
            break
        for job in running:
            job.cancel()
        await asyncio.wait(running, timeout=1.0)
    for job in jobs:
        if job.done() and not job.cancelled():
            job.exception()  # retrieved: its end was already reported by _job_ended
    stuck = [job.get_name() for job in jobs if not job.done()]
    if stuck:
        logger.warning("feed jobs did not stop when cancelled", extra={"jobs": stuck})


async def _quietly(write: Awaitable[None]) -> None:
    """A status write that may fail (Redis away): the log line already told the story."""
    try:
        await write
    except Exception:  # noqa: BLE001
        stop_if_cancelled()
        logger.debug("could not record feed status", exc_info=True)


async def _job_ended(job: asyncio.Task[None], status: FeedStatus) -> None:
    """A feed job that stops by itself is either done (a replay that ran out) or dead: say which."""
    if job.cancelled():
        return
    name = job.get_name().removeprefix("feed-")
    error = job.exception()
    if error is None:
        await _quietly(status.ended(name, None))
        return
    logger.error(
        "feed job died",
        extra={"job": name, "error": repr(error)},
        exc_info=(type(error), error, error.__traceback__),
    )
    await _quietly(status.ended(name, repr(error)[:300]))


async def _start_jobs(
    app: web.Application,
    status: FeedStatus,
    http: aiohttp.ClientSession,
    chosen_pass: dict[str, int],
) -> list[asyncio.Task[None]]:
    settings = app[SETTINGS]
    markets = app[SERVICES].markets
    if settings.feed.startswith("replay:"):
        events = replay.load_timeline(Path(settings.feed.removeprefix("replay:")))
        sink = patient(replay_sink(app), status)
        if "replay" not in chosen_pass:
            chosen_pass["replay"] = await markets.replay_first_pass(
                events, app.get(RESET_REPLAY, False)
            )
        first_pass = chosen_pass["replay"]
        # Replayed odds are as fresh as the replay's own readings (odds lines and frames): a
        # market the timeline does not move ages like any other and turns ODDS_STALE.
        await status.begin(["replay"])

        async def play() -> PollReport:
            delivered = await replay.play(
                events,
                settings.feed_replay_speed,
                sink,
                loop_forever=settings.feed_replay_loop,
                first_pass=first_pass,
            )
            return PollReport("replay", seen=delivered)

        async def replay_forever() -> None:
            report = await play()
            await status.record("replay", True, report)
            logger.info("replay finished", extra={"events": report.seen})

        return [
            asyncio.create_task(replay_forever(), name="feed-replay"),
        ]
    client = PolymarketClient(
        http,
        settings.polymarket_gamma_url,
        settings.polymarket_base_url,
        settings.polymarket_api_key,
        timeout_s=settings.feed_timeout_s,
    )
    poller = MarketPoller(app[DB_POOL], client, markets, max_markets=settings.feed_max_markets)
    resolutions = ResolutionCheck(
        app[DB_POOL],
        client,
        app[SERVICES].settlement.resolve,
        markets.close,
        lambda: poller.unlisted,
    )
    streaming = settings.feed_stream
    await status.begin(["markets", "odds", "resolution", *(["stream"] if streaming else [])])
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
    poll_odds: Callable[[], Awaitable[PollReport]] = poller.poll_odds
    stream_tasks: list[asyncio.Task[None]] = []
    if streaming:
        odds_stream, coroutines = stream_jobs(app, http, poller, status)
        app[MIRROR].stream = odds_stream

        async def poll_unstreamed_odds() -> PollReport:
            # Only what the stream has not kept current; what it keeps current counts as read.
            return await poller.poll_odds(
                odds_stream.streamed_markets(), odds_stream.live_markets()
            )

        poll_odds = poll_unstreamed_odds

        stream_tasks = [
            asyncio.create_task(run(), name=f"feed-{name}") for name, run in coroutines.items()
        ]
    return [
        *stream_tasks,
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
            run_every("odds", settings.feed_odds_interval_s, poll_odds, status),
            name="feed-odds",
        ),
        asyncio.create_task(
            run_every("resolution", settings.feed_resolution_interval_s, resolutions.poll, status),
            name="feed-resolution",
        ),
    ]


async def feed_readiness(app: web.Application) -> tuple[bool, Any]:
    """Markets keep being served whatever the feed does, but a configured feed whose jobs died
    (or never started) makes the node unready, so the operator and the orchestrator see it."""
    settings = app[SETTINGS]
    cache = app[MARKET_CACHE]
    now = datetime.now(UTC)
    stale = sum(1 for row in cache.open_rows() if is_stale(row, now, settings.odds_max_age_s))
    jobs = await FeedStatus(app[REDIS]).read()
    died = sorted(job for job, state in jobs.items() if state.get("state") == "died")
    running = [job for job, state in jobs.items() if state.get("state", "running") == "running"]
    healthy = settings.feed == "off" or not jobs or (not died and bool(running))
    detail: dict[str, Any] = {
        "mode": settings.feed.split(":")[0],
        "jobs": jobs,
        "staleOdds": stale,
        "openMarkets": len(cache.open_rows()),
    }
    if not healthy:
        detail["error"] = (
            f"feed job(s) died: {', '.join(died)}" if died else "no feed job is running"
        )
    return healthy, detail


async def feed_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[READINESS_CHECKS]["feed"] = feed_readiness
    metrics.STREAM_ENABLED.set(int(settings.feed == "polymarket" and settings.feed_stream))
    if settings.feed == "off":
        yield
        return
    # The lease on a connection of its own: a renewal never waits behind a busy shared pool (a
    # node carrying thousands of sockets), where it could miss its TTL and hand the feed over.
    assert settings.redis_url is not None
    lease_client = redis.Redis.from_url(settings.redis_url, max_connections=2, socket_timeout=5)
    lease = Lease(lease_client, keys.FEED_LOCK, settings.feed_lease_ttl_s)
    try:
        async with aiohttp.ClientSession() as http:
            leader = await spawn(app, lead(app, lease, http), name="feed")
            yield
            await leader.close()
            try:
                await lease.release()
            except Exception:  # noqa: BLE001 - the lease expires by itself
                logger.debug("lease release failed", exc_info=True)
    finally:
        await lease_client.aclose()
