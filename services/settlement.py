"""Resolving a market: the resolution check, the settlement, then the leaderboards and the
announcements; and finishing what a dead process left half done.

The settlement itself (the market's status and every bet's payout or refund) commits in
storage/settlement.py, called by `Settlement.resolve`, which every way of learning of a
resolution goes through (the check below, the market channel, the replay). What follows runs
after that commit, so a client never hears of money that
could still roll back: the leaderboard is recomputed from the ledger, then everyone is told. If
the process dies in between, the market's `leaderboard_outbox` row makes the periodic
`settle_pending` (also run at start) finish the job.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as redis

from feeds.polymarket import PolymarketClient
from game.markets import Resolution, UpstreamState
from services import metrics
from services.leaderboards import Leaderboards
from services.markets import PollReport, Resolver
from services.notifier import BalanceReason, Notifier
from storage import leaderboards, settlement
from storage.rows import Market
from storage.settlement import SettlementResult

logger = logging.getLogger("thisthat.settlement")

RESOLUTION_CONCURRENCY = 8

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

    async def resolve(
        self, market_id: uuid.UUID, resolution: Resolution, now: datetime | None = None
    ) -> SettlementResult:
        """Resolve `market_id` once (a repeat settles nothing); then boards and announcements.

        The status transition and every bet's payout or refund commit in storage/settlement.py;
        only after that commit does `settled` recompute the leaderboards and announce (a client
        never hears of money that could still roll back).
        """
        result = await settlement.settle_market(
            self.pool, market_id, resolution, now or datetime.now(UTC)
        )
        if result.market is not None:
            await self.settled(result)
        return result

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
            # Expected after any restart of a Redis that keeps no data (the embedded one, a fresh
            # server): the ledger is the truth and the boards are rebuilt from it, nothing lost.
            logger.info("leaderboards rebuilt from the ledger: Redis had none (new or restarted)")
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
                self.notifier.bet_settled(
                    settled.user_id, settled.bet, settled.balance, settled.balance_version
                )
            reason: BalanceReason = (
                "refund" if result.resolution is Resolution.CANCELLED else "payout"
            )
            paid = {settled.user_id for settled in result.bets if settled.payout > 0}
            for user_id, (balance, version) in result.final_balances().items():
                if user_id in paid:
                    self.notifier.balance_changed(user_id, balance, version, reason)
            if result.market is not None:
                # Also after a restart: the dead process may have flipped the status unannounced.
                await self.notifier.market_updated(result.market)
        except Exception:
            logger.exception(
                "settlement announcements failed", extra={"marketId": str(result.market_id)}
            )


class ResolutionCheck:
    """The resolution job: markets past their end, closed upstream, or no longer listed are asked
    about (CLOB, then Gamma) and settled through `Settlement.resolve`; a market that only stopped
    trading is closed to bets through `close` (services/markets.py `Markets.close`)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: PolymarketClient,
        resolve: Resolver,
        close: Callable[[uuid.UUID], Awaitable[bool]],
        unlisted: Callable[[], Collection[str]],
    ) -> None:
        self.pool = pool
        self.client = client
        self.resolve = resolve  # Settlement.resolve
        self.close = close
        # Condition ids of stored open markets missing from the latest listing (MarketPoller).
        self.unlisted = unlisted

    async def poll(self) -> PollReport:
        """Markets past their end, closed, or no longer listed: ask CLOB (then Gamma) how they ended."""
        report = PollReport("resolution")
        requests_before = self.client.requests_made
        candidates = await settlement.markets_to_resolve(
            self.pool, datetime.now(UTC), sorted(self.unlisted())
        )
        semaphore = asyncio.Semaphore(RESOLUTION_CONCURRENCY)

        async def check(row: Market) -> bool:
            async with semaphore:
                state = await self.client.upstream_state(row.source_id)
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

    async def _apply_state(self, row: Market, state: UpstreamState | None) -> bool:
        if state is None:
            # Confirmed gone upstream (neither CLOB nor Gamma knows it): void, refund every stake.
            logger.warning("market gone upstream; cancelling", extra={"marketId": str(row.id)})
            await self.resolve(row.id, Resolution.CANCELLED)
            return True
        if state.resolution is not None:
            await self.resolve(row.id, state.resolution)
            return True
        if state.closed and row.status == "open":
            return await self.close(row.id)
        return False
