"""Micro-batching of bets: many bets in one committed transaction, each answered with its own result.

A bet waits for nothing artificial. A few workers each take whatever bets have queued up while
the previous commit was in flight (one bet when the server is quiet, hundreds under load) and
place them with `place_bets`, one round trip and one durable commit for the lot. So the commit
cost is shared and throughput grows with load instead of stopping at one fsync per bet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from game.errors import GameError
from game.rules import GameRules
from server import metrics
from server.admission import QueueAdmission
from storage import bets
from storage.bets import BetRequest, PlacedBet

logger = logging.getLogger("thisthat.bets")

MAX_BATCH = 200
WORKERS = 4

# A bet, its answer, and when it was queued (loop time).
Pending = tuple[BetRequest, "asyncio.Future[PlacedBet]", float]


class BetBatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        rules: GameRules,
        *,
        max_batch: int = MAX_BATCH,
        admission: QueueAdmission | None = None,
    ) -> None:
        self.pool = pool
        self.rules = rules
        self.max_batch = max_batch
        self.admission = admission or QueueAdmission()
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self.batches = 0
        self.bets = 0

    async def place(self, request: BetRequest) -> PlacedBet:
        """Answers once the bet's transaction committed; raises the GameError that refused it."""
        loop = asyncio.get_running_loop()
        self.admission.admit(loop.time())
        future: asyncio.Future[PlacedBet] = loop.create_future()
        self._queue.put_nowait((request, future, loop.time()))
        return await future

    async def work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            now = loop.time()
            self.admission.dequeued(now - batch[0][2], now)
            batch = self._drop_expired(batch, now)
            if not batch:
                continue
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                for _, future, _ in batch:
                    future.cancel()
                raise
            except Exception as error:  # noqa: BLE001 - the worker must outlive any one batch
                # An error of no expected kind (asyncpg's InternalClientError from a connection a
                # database crash left half-used, say) answers its own bets and ends nothing else:
                # a dead worker would leave its bets unanswered and the node a worker short.
                logger.exception("bet batch failed", extra={"size": len(batch)})
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)

    def _drop_expired(self, batch: list[Pending], now: float) -> list[Pending]:
        """Refuse, unwritten, the bets that waited past the deadline; keep the rest."""
        kept = []
        for pending in batch:
            refusal = self.admission.expired_bet(now - pending[2])
            if refusal is None:
                kept.append(pending)
            elif not pending[1].done():
                pending[1].set_exception(refusal)
        return kept

    async def _commit(self, batch: list[Pending]) -> None:
        requests = [request for request, _, _ in batch]
        try:
            answers = await bets.place_bets(self.pool, requests, self.rules)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as error:
            if len(batch) == 1:
                _, future, _ = batch[0]
                if not future.done():
                    future.set_exception(error)
                return
            # Nothing of the batch committed. One by one, so one bad apple spoils only itself.
            logger.warning(
                "bet batch failed; placing its bets one by one",
                exc_info=True,
                extra={"size": len(batch)},
            )
            for pending in batch:
                await self._commit([pending])
            return
        self.batches += 1
        self.bets += len(batch)
        metrics.BET_BATCH_SIZE.observe(len(batch))
        for (_, future, _), answer in zip(batch, answers, strict=True):
            if future.done():
                continue  # the asker is gone (socket closed); the bet stands all the same
            if isinstance(answer, GameError):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    def drain(self) -> None:
        """At shutdown: bets still queued were never sent, so they are refused, not lost."""
        while not self._queue.empty():
            _, future, _ = self._queue.get_nowait()
            future.cancel()


async def bet_batcher_ctx(app: web.Application) -> AsyncIterator[None]:
    from server import appkeys
    from server.jobs import spawn

    batcher = BetBatcher(app[appkeys.DB_POOL], app[appkeys.RULES])
    app[appkeys.BET_BATCHER] = batcher
    workers = [await spawn(app, batcher.work(), name=f"bet-batcher-{n}") for n in range(WORKERS)]
    yield
    for worker in workers:
        await worker.close()
    batcher.drain()
