"""Gauges refreshed when /metrics is scraped: state that no event on this node changes (the pool,
the market cache's freshness, the feed's health and the last audit in Redis, the balances)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Final

import orjson
import redis.asyncio as redis
from aiohttp import web

from server.fanout.market_cache import MARKET_CACHE, is_stale
from server.runtime import metrics
from server.runtime.resources import DB_POOL, REDIS
from server.settings import SETTINGS
from storage import audit, keys, wallet

logger = logging.getLogger("thisthat.metrics")

# The balance distribution scans every user: at most once a minute per node, whatever the scrapes.
BALANCES_REFRESH_S: Final = 60.0
BALANCES_TIMEOUT_S: Final = 5.0


class ScrapeState:
    def __init__(self) -> None:
        self.balances_at = float("-inf")


SCRAPE_STATE = web.AppKey("scrape_state", ScrapeState)


async def refresh(app: web.Application) -> None:
    pool = app[DB_POOL]
    metrics.DB_POOL_SIZE.set(pool.get_size())
    metrics.DB_POOL_IN_USE.set(pool.get_size() - pool.get_idle_size())
    metrics.DB_POOL_MAX.set(pool.get_max_size())
    _markets(app)
    await _redis_state(app[REDIS])
    await _balances(app)


def _markets(app: web.Application) -> None:
    now = datetime.now(UTC)
    max_age_s = app[SETTINGS].odds_max_age_s
    rows = app[MARKET_CACHE].open_rows()
    metrics.MARKETS_OPEN.set(len(rows))
    metrics.MARKETS_STALE_ODDS.set(sum(1 for row in rows if is_stale(row, now, max_age_s)))
    ages = [(now - row.odds_updated_at).total_seconds() for row in rows]
    metrics.ODDS_AGE_MAX.set(max(ages, default=0.0))


async def _redis_state(client: redis.Redis) -> None:
    try:
        await client.ping()
        jobs = await client.hgetall(keys.FEED_STATUS)
        audited_at, violations = await audit.last_result(client)
    except (redis.RedisError, OSError):
        metrics.REDIS_UP.set(0)
        metrics.REDIS_ERRORS.labels("metrics").inc()
        logger.warning("metrics: redis unreachable", exc_info=True)
        return
    metrics.REDIS_UP.set(1)
    metrics.AUDIT_LAST_RUN.set(audited_at)
    metrics.AUDIT_VIOLATIONS.set(violations)
    # FeedStatus (storage.feed_status) writes one JSON object per job; the poller may be another node.
    for job, raw in jobs.items():
        state = orjson.loads(raw)
        last = state.get("lastSuccessAt")
        metrics.FEED_LAST_SUCCESS.labels(job).set(
            datetime.fromisoformat(last).timestamp() if last else 0
        )
        metrics.FEED_CONSECUTIVE_FAILURES.labels(job).set(state.get("consecutiveFailures", 0))


async def _balances(app: web.Application) -> None:
    state = app[SCRAPE_STATE]
    if time.monotonic() - state.balances_at < BALANCES_REFRESH_S:
        return
    state.balances_at = time.monotonic()
    try:
        async with app[DB_POOL].acquire(timeout=BALANCES_TIMEOUT_S) as connection:
            distribution = await wallet.balance_distribution(connection, metrics.BALANCE_BUCKETS)
    except Exception:  # noqa: BLE001 - a busy or absent database keeps the previous snapshot
        logger.warning("metrics: balance distribution not refreshed", exc_info=True)
        return
    metrics.BALANCES.update(*distribution)
