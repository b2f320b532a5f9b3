"""After a market settles: the leaderboards, then the announcements; and finishing what a dead
process left half done.

The settlement itself (the market's status and every bet's payout or refund) commits in
storage/settlement.py, called by `Markets.resolve` (services/markets.py, the one writer of a
market's status). This module runs after that commit, so a client never hears of money that
could still roll back: the leaderboard is recomputed from the ledger, then everyone is told. If
the process dies in between, the market's `leaderboard_outbox` row makes the periodic
`settle_pending` (also run at start) finish the job.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as redis

from game.markets import Resolution
from services import metrics
from services.leaderboards import Leaderboards
from services.notifier import BalanceReason, Notifier
from storage import leaderboards, settlement
from storage.settlement import SettlementResult

logger = logging.getLogger("thisthat.settlement")

SETTLE_PENDING_INTERVAL_S = 30.0


class Settlement:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: redis.Redis,
        notifier: Notifier,
        boards: Leaderboards,
    ) -> None:
        self.pool = pool
        self.client = client
        self.notifier = notifier
        self.boards = boards

    async def settled(self, result: SettlementResult) -> None:
        """A market's settlement has committed: update leaderboards, announce.

        Announced: each settled bet with its owner's balance, each paid player's balance
        (reason payout or refund), and the market's new state.
        """
        logger.info(
            "market settled",
            extra={
                "marketId": str(result.market_id),
                "resolution": result.resolution.value if result.resolution else None,
                "bets": len(result.bets),
                "complete": result.complete,
            },
        )
        await self._announce(result)

    async def settle_pending(self) -> int:
        """Finish half-settled markets and replay lost leaderboard updates; how many it touched."""
        if await leaderboards.restore_if_lost(self.pool, self.client, datetime.now(UTC)):
            logger.warning("leaderboards were missing from Redis; rebuilt them from the ledger")
        results = await settlement.settle_pending(self.pool, datetime.now(UTC))
        for result in results:
            logger.info(
                "pending settlement finished",
                extra={"marketId": str(result.market_id), "bets": len(result.bets)},
            )
            await self._announce(result)
        synced = await leaderboards.sync_pending(self.pool, self.client)
        if synced and not results:
            await self.boards.changed()
        return len(results) + synced

    async def _announce(self, result: SettlementResult) -> None:
        """Everything after the commit. Each step is independent: one failing must not stop the rest."""
        try:
            await leaderboards.sync_market(self.pool, self.client, result.market_id)
            await self.boards.changed()
        except Exception:
            # The outbox row stays; settle_pending replays the recomputation.
            logger.exception(
                "leaderboard update after settlement failed",
                extra={"marketId": str(result.market_id)},
            )
        try:
            for settled in result.bets:
                metrics.BETS_SETTLED.labels(settled.bet.status).inc()
                self.notifier.bet_settled(settled.user_id, settled.bet, settled.balance)
            reason: BalanceReason = (
                "refund" if result.resolution is Resolution.CANCELLED else "payout"
            )
            paid = {settled.user_id for settled in result.bets if settled.payout > 0}
            for user_id, balance in result.final_balances().items():
                if user_id in paid:
                    self.notifier.balance_changed(user_id, balance, reason)
            if result.market is not None:
                # Also after a restart: the dead process may have flipped the status unannounced.
                await self.notifier.market_updated(result.market)
        except Exception:
            logger.exception(
                "settlement announcements failed", extra={"marketId": str(result.market_id)}
            )
