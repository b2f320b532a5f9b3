"""Placing bets: admission, micro-batching, and the use case behind `bet:place`, `bets:list`, `sync`.

Micro-batching: a bet waits for nothing artificial. A few workers (BET_WORKERS, 2 by default)
each take whatever bets have queued up while the previous commit was in flight (one bet when
the server is quiet, hundreds under load) and place them with `place_bets`, one round trip and one durable commit for the lot.
So the commit cost is shared and throughput grows with load instead of stopping at one fsync
per bet.

Admission by the age of the queued work, so goodput holds past capacity: past its capacity an
open-loop load (players who bet whatever the latency) grows the bet queue until every answer
comes after the client gave up, while the event loop itself stays prompt. So the queue's own
delay decides, in the manner of CoDel: when bets have waited longer than `target_s` at dequeue
for a whole `interval_s`, new bets are refused at once (RATE_LIMITED with a retry hint) until a
dequeue sees the queue fast again; and a bet that has waited past `deadline_s` is refused
without being written, because its client has likely given up on it. Either way a bet is
written and acked ok, or refused and not written.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from game.bets import validate_amount
from game.errors import GameError, ServerBusy
from game.rules import GameRules
from services import metrics
from services.notifier import Notifier
from storage import bets
from storage.bets import BetFilter, BetRequest, PlacedBet
from storage.rows import Bet


@dataclass
class QueueAdmission:
    target_s: float = 0.05
    interval_s: float = 0.1
    deadline_s: float = 2.0
    retry_after_ms: int = 250
    overloaded: bool = False
    refused: int = 0
    expired: int = 0
    _above_since: float | None = field(default=None, repr=False)

    def admit(self, *, queue_empty: bool) -> None:
        """Raise RATE_LIMITED at once while the queue is known to be slow.

        Refusing keeps new bets out of the queue, so no dequeue would ever see it fast again:
        a queue found empty ends the overload, and the next dequeues judge afresh.
        """
        if self.overloaded and queue_empty:
            self.overloaded = False
            self._above_since = None
        if self.overloaded:
            self.refused += 1
            metrics.BETS_SHED.inc()
            raise ServerBusy(self.retry_after_ms)

    def dequeued(self, waited_s: float, now: float) -> None:
        """Called for the head of each batch: how long it waited decides the state."""
        if waited_s <= self.target_s:
            self._above_since = None
            self.overloaded = False
            return
        if self._above_since is None:
            self._above_since = now
        elif now - self._above_since >= self.interval_s:
            self.overloaded = True

    def expired_bet(self, waited_s: float) -> ServerBusy | None:
        """The refusal for a bet that waited past the deadline, else None."""
        if waited_s <= self.deadline_s:
            return None
        self.expired += 1
        metrics.BETS_SHED.inc()
        return ServerBusy(self.retry_after_ms)


logger = logging.getLogger("thisthat.bets")

MAX_BATCH = 200

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
        # Set by the first worker; on Python 3.11 each lookup of the running loop is a getpid().
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.bets = 0

    async def place(self, request: BetRequest) -> PlacedBet:
        """Answers once the bet's transaction committed; raises the GameError that refused it."""
        self.admission.admit(queue_empty=self._queue.empty())
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[PlacedBet] = loop.create_future()
        self._queue.put_nowait((request, future, loop.time()))
        return await future

    async def work(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
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


class Betting:
    def __init__(
        self, pool: asyncpg.Pool, rules: GameRules, notifier: Notifier, batcher: BetBatcher
    ) -> None:
        self.pool = pool
        self.rules = rules
        self.notifier = notifier
        self.batcher = batcher

    async def place(self, request: BetRequest, *, asker: str | None = None) -> PlacedBet:
        """Place the bet (or answer the one placed under its clientBetId); raises its refusal.

        A new bet's balance is announced to the player's other sockets; `asker` gets it in
        its answer.
        """
        try:
            stake = validate_amount(request.amount, self.rules)
        except GameError:
            # The slow path knows whether this is a repeat of a placed bet (answered whatever its
            # payload) or a refusal.
            placed = await bets.place_bet(self.pool, rules=self.rules, **request.fields())
        else:
            placed = await self.batcher.place(request.with_amount(stake))
        if placed.created:
            # Only a new bet moved the balance; a repeat of its clientBetId changed nothing.
            metrics.BETS_PLACED.inc()
            self.notifier.balance_changed(
                request.user_id, placed.balance, "bet", except_asker=asker
            )
        return placed

    async def page(
        self,
        user_id: uuid.UUID,
        status: BetFilter,
        cursor: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Bet]:
        """Up to `limit` + 1 bets, newest first: the extra one says another page exists."""
        return await bets.list_bets(self.pool, user_id, status, cursor, limit)

    async def open_bets(self, user_id: uuid.UUID) -> list[Bet]:
        return await bets.open_bets(self.pool, user_id)
