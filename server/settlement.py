"""Settling a market and telling everyone: storage settlement, leaderboards, then the pushes.

Order matters: pushes go out only after the settlement committed (a client never hears of money
that could still roll back), and the leaderboard is recomputed from the ledger right after the
commit. If the process dies in between, the market's `leaderboard_outbox` row makes the periodic
`settle_pending_and_announce` (also run at start) finish the job.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from game.markets import Resolution
from server import appkeys, metrics
from server.jobs import spawn, stop_if_cancelled
from server.leaderboard_push import leaderboards_changed
from server.market_cache import publish_changes
from server.rooms import emit_balance, market_room, user_room
from server.views import bet_view, market_view
from storage import leaderboards, settlement

logger = logging.getLogger("thisthat.settlement")

SETTLE_PENDING_INTERVAL_S: Final = 30.0


async def settle_and_announce(
    app: web.Application, market_id: uuid.UUID, resolution: Resolution, now: datetime | None = None
) -> settlement.SettlementResult:
    """Resolve `market_id` once (a repeat settles nothing), update leaderboards, push to players.

    Pushes: `bet:settled` {bet, balance} per bet and `balance` {reason: payout|refund} per paid
    player to `user:<id>`; `market:update` {market} to `market:<id>`.
    """
    result = await settlement.settle_market(
        app[appkeys.DB_POOL], market_id, resolution, now or datetime.now(UTC)
    )
    if result.market is None:
        return result
    logger.info(
        "market settled",
        extra={
            "marketId": str(market_id),
            "resolution": resolution.value,
            "bets": len(result.bets),
            "complete": result.complete,
        },
    )
    await _announce(app, result)
    return result


async def settle_pending_and_announce(app: web.Application) -> int:
    """Finish half-settled markets and replay lost leaderboard updates; how many markets it touched."""
    pool = app[appkeys.DB_POOL]
    if await leaderboards.restore_if_lost(pool, app[appkeys.REDIS], datetime.now(UTC)):
        logger.warning("leaderboards were missing from Redis; rebuilt them from the ledger")
    results = await settlement.settle_pending(pool, datetime.now(UTC))
    for result in results:
        logger.info(
            "pending settlement finished",
            extra={"marketId": str(result.market_id), "bets": len(result.bets)},
        )
        await _announce(app, result)
    synced = await leaderboards.sync_pending(pool, app[appkeys.REDIS])
    if synced and not results:
        await leaderboards_changed(app)
    return len(results) + synced


async def _announce(app: web.Application, result: settlement.SettlementResult) -> None:
    """Everything after the commit. Each step is independent: one failing must not stop the rest."""
    try:
        await leaderboards.sync_market(app[appkeys.DB_POOL], app[appkeys.REDIS], result.market_id)
        await leaderboards_changed(app)
    except Exception:
        # The outbox row stays; settle_pending_and_announce replays the recomputation.
        logger.exception(
            "leaderboard update after settlement failed", extra={"marketId": str(result.market_id)}
        )
    pushes = app[appkeys.PUSHES]
    try:
        for settled in result.bets:
            metrics.BETS_SETTLED.labels(settled.bet["status"]).inc()
            pushes.emit(
                "bet:settled",
                {"bet": bet_view(settled.bet), "balance": settled.balance},
                user_room(settled.user_id),
            )
        reason = "refund" if result.resolution is Resolution.CANCELLED else "payout"
        paid = {settled.user_id for settled in result.bets if settled.payout > 0}
        for user_id, balance in result.final_balances().items():
            if user_id in paid:
                emit_balance(pushes, user_id, balance, reason)
        if result.market is not None:
            # Also after a restart: the dead process may have flipped the status without telling.
            app[appkeys.MARKET_CACHE].apply([result.market])
            await publish_changes(app[appkeys.REDIS], app[appkeys.MARKET_CACHE], [result.market_id])
            pushes.emit(
                "market:update",
                {"market": market_view(result.market)},
                market_room(result.market_id),
            )
    except Exception:
        logger.exception("settlement pushes failed", extra={"marketId": str(result.market_id)})


async def _settle_pending_forever(app: web.Application) -> None:
    while True:
        try:
            await settle_pending_and_announce(app)
        except Exception:
            stop_if_cancelled()
            logger.exception("settle_pending failed; retrying later")
        # redis-py can swallow a cancel that lands while it opens a connection: without this,
        # a shutdown during the pass would wait out its close timeout.
        stop_if_cancelled()
        await asyncio.sleep(SETTLE_PENDING_INTERVAL_S)


async def settlement_ctx(app: web.Application) -> AsyncIterator[None]:
    """Crash safety: at start (first run at once) and every 30 s, finish what a dead process left."""
    worker = await spawn(app, _settle_pending_forever(app), name="settle-pending")
    yield
    await worker.close()
