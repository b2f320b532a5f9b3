"""The application layer's runtime in this process: builds the use cases (services/) on the
server's resources and runs their background work (bet batch workers, pending settlements,
market activity pushes)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
from aiohttp import web

from server.auth.passwords import PASSWORDS
from server.auth.tokens import TOKENS
from server.fanout.announcer import SocketNotifier
from server.fanout.market_cache import MARKET_CACHE
from server.fanout.pushes import PUSHES
from server.runtime.jobs import spawn, stop_if_cancelled
from server.runtime.overload import LOOP_LAG, RETRY_AFTER_MS
from server.runtime.resources import DB_POOL, LOGIN_GUARD, REDIS
from server.settings import RULES, SETTINGS
from services import odds_history
from services.activity import MarketActivity
from services.betting import QueueAdmission
from services.container import Services, SignIn, build_services
from services.settlement import SETTLE_PENDING_INTERVAL_S

logger = logging.getLogger("thisthat.app")

SERVICES: Final = web.AppKey("services", Services)


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """Needs the pool, Redis, the password hasher, pushes and the market cache; the feed needs it."""

    async def spawn_job(coro: Coroutine[Any, Any, None], name: str) -> object:
        return await spawn(app, coro, name=name)

    notifier = SocketNotifier(app[PUSHES], app[MARKET_CACHE], app[REDIS])
    settings = app[SETTINGS]
    admission = QueueAdmission(
        target_s=settings.bet_queue_target_ms / 1000,
        deadline_s=settings.bet_queue_deadline_ms / 1000,
        # The hint the edge gives for the same backlog (server/runtime/overload.py), so a busy node
        # tells a client one thing whichever place refused its bet.
        retry_after_ms=RETRY_AFTER_MS,
    )
    sign_in = SignIn(
        app[PASSWORDS],
        app[TOKENS],
        app[LOGIN_GUARD],
        timedelta(seconds=settings.refresh_reuse_grace_s),
    )
    push_activity_s = settings.market_activity_push_interval_ms / 1000
    services = build_services(
        app[DB_POOL],
        app[REDIS],
        app[RULES],
        notifier,
        spawn_job,
        sign_in,
        admission,
        announce_activity=push_activity_s > 0,
        max_announced_bets=settings.market_activity_push_max_bets,
    )
    app[SERVICES] = services
    # Past capacity the transport refuses bets before decoding them (server/runtime/overload.py).
    app[LOOP_LAG].queue_backlogged = services.batcher.backlogged
    workers = [
        await spawn(app, services.batcher.work(), name=f"bet-batcher-{n}")
        for n in range(settings.bet_workers)
    ]
    # Crash safety: at start (first run at once) and every 30 s, finish what a dead process left.
    settler = await spawn(app, _settle_pending_forever(services), name="settle-pending")
    pruner = await spawn(app, _prune_odds_history_forever(app[DB_POOL]), name="odds-history-prune")
    announcer = None
    if push_activity_s > 0:
        announcer = await spawn(
            app, _announce_activity_forever(services.activity, push_activity_s), name="activity"
        )
    yield
    if announcer is not None:
        await announcer.close()
    await pruner.close()
    await settler.close()
    for worker in workers:
        await worker.close()
    services.batcher.drain()


async def _prune_odds_history_forever(pool: asyncpg.Pool) -> None:
    """Keeps the odds history bounded: at start, then every PRUNE_INTERVAL_S."""
    while True:
        try:
            minutes = await odds_history.prune(pool, datetime.now(UTC))
            if minutes:
                logger.info("odds history pruned", extra={"minutes": minutes})
        except Exception:
            stop_if_cancelled()
            logger.exception("odds history pruning failed; retrying later")
        stop_if_cancelled()
        await asyncio.sleep(odds_history.PRUNE_INTERVAL_S)


async def _announce_activity_forever(activity: MarketActivity, interval_s: float) -> None:
    """Every interval, the bets this node placed go to their markets' subscribers, one batch a
    market. A batch that fails is not retried: its bets are in the pages."""
    failing = False
    while True:
        await asyncio.sleep(interval_s)
        try:
            await activity.flush()
        except Exception:
            stop_if_cancelled()
            if not failing:  # one line per outage, not one per interval
                logger.warning("market activity not pushed; retrying", exc_info=True)
            failing = True
        else:
            if failing:
                logger.info("market activity pushed again")
            failing = False


async def _settle_pending_forever(services: Services) -> None:
    while True:
        try:
            await services.settlement.settle_pending()
        except Exception:
            stop_if_cancelled()
            logger.exception("settle_pending failed; retrying later")
        # redis-py can swallow a cancel that lands while it opens a connection: without this,
        # a shutdown during the pass would wait out its close timeout.
        stop_if_cancelled()
        await asyncio.sleep(SETTLE_PENDING_INTERVAL_S)
