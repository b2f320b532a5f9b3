"""Placing bets: admission, micro-batching, and the use case behind `bet:place`, `bets:list`, `sync`.

Micro-batching: a bet waits for nothing artificial. A few workers (BET_WORKERS, 2 by default)
each take whatever bets have queued up while the previous commit was in flight (one bet when
the server is quiet, hundreds under load) and place them with `place_bets`, one round trip and
one durable commit for the lot. So the commit cost is shared and throughput grows with load
instead of stopping at one fsync per bet.

Admission by the age of the queued work, so goodput holds past capacity: past its capacity an
open-loop load (players who bet whatever the latency) grows the bet queue until every answer
comes after the client gave up, while the event loop itself stays prompt. So the queue's own
delay decides: while the oldest queued bet has waited longer than `target_s` (the workers have
not drained the queue for that long), a new bet is refused at once (RATE_LIMITED with a retry
hint) instead of queued behind it; and a bet that has waited past `deadline_s` is refused
without being written, because its client has likely given up on it. Either way a bet is
written and acked ok, or refused and not written. The refusals keep arrivals to what the
workers place within the target, so accepted bets keep a bounded latency.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from game.bets import BetRequest, validate_amount
from game.errors import GameError, NotReady, RateLimited, ServerBusy
from game.rules import GameRules
from services import metrics
from services.notifier import Notifier
from storage import bets
from storage.bets import BetFilter, PlacedBet
from storage.rows import Bet


@dataclass
class QueueAdmission:
    target_s: float = 0.05
    deadline_s: float = 2.0
    retry_after_ms: int = 250
    refused: int = 0
    expired: int = 0

    def admit(self, *, oldest_wait_s: float) -> None:
        """Raise RATE_LIMITED at once while the oldest queued bet has waited past the target.

        The age of the head of the queue needs no state to recover: refusals stop new bets
        from queueing, the workers take what is queued, and the next bet finds a young queue.
        """
        if oldest_wait_s > self.target_s:
            self.refused += 1
            metrics.BETS_SHED.inc()
            raise ServerBusy(self.retry_after_ms)

    def expired_bet(self, waited_s: float) -> ServerBusy | None:
        """The refusal for a bet that waited past the deadline, else None."""
        if waited_s <= self.deadline_s:
            return None
        self.expired += 1
        metrics.BETS_SHED.inc()
        return ServerBusy(self.retry_after_ms)


logger = logging.getLogger("thisthat.bets")

MAX_BATCH = 200

# The database went away under a batch: the connection broke or was terminated, the server shut
# down, crashed or refuses connections, or asyncpg's state on a connection the crash left half-used
# is off (InternalClientError). The bet may or may not have committed, and a retry of its
# clientBetId says which: NOT_READY, the "retry later" of docs/protocol.md, never INTERNAL_ERROR.
DATABASE_GONE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)


def _answer_for(error: Exception) -> Exception:
    """What a bet whose batch failed with `error` is answered."""
    if isinstance(error, DATABASE_GONE):
        logger.warning(
            "bet refused: the database is unavailable", extra={"error": type(error).__name__}
        )
        return NotReady()
    return error


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
        on_placed: Callable[[Bet], None] | None = None,
    ) -> None:
        self.pool = pool
        self.rules = rules
        self.max_batch = max_batch
        self.admission = admission or QueueAdmission()
        # Hears each new bet once its batch committed (market activity). It runs on the bet
        # path, so it must only take note, never wait.
        self.on_placed = on_placed
        # Bets waiting for a worker, oldest first; `_queued` wakes the workers.
        self._queue: deque[Pending] = deque()
        self._queued = asyncio.Event()
        # Kept once known; on Python 3.11 each lookup of the running loop is a getpid().
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.bets = 0

    async def place(self, request: BetRequest) -> PlacedBet:
        """Answers once the bet's transaction committed; raises the GameError that refused it."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        if self._queue:
            self.admission.admit(oldest_wait_s=now - self._queue[0][2])
        future: asyncio.Future[PlacedBet] = loop.create_future()
        self._queue.append((request, future, now))
        self._queued.set()
        return await future

    def backlogged(self) -> bool:
        """Whether a new bet would be refused now: the transport asks before decoding a bet, so
        past capacity most refusals cost next to nothing."""
        if not self._queue or self._loop is None:
            return False
        return self._loop.time() - self._queue[0][2] > self.admission.target_s

    async def work(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._queued.clear()
                await self._queued.wait()
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            batch = self._drop_expired(batch, loop.time())
            if not batch:
                continue
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                for _, future, _ in batch:
                    future.cancel()
                raise
            except Exception as error:  # noqa: BLE001 - the worker must outlive any one batch
                # An error of no expected kind answers its own bets and ends nothing else: a dead
                # worker would leave its bets unanswered and the node a worker short.
                logger.exception("bet batch failed", extra={"size": len(batch)})
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(_answer_for(error))

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
        except (
            asyncpg.PostgresError,
            OSError,
            TimeoutError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
        ) as error:
            if len(batch) == 1:
                _, future, _ = batch[0]
                if not future.done():
                    future.set_exception(_answer_for(error))
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
        # Counted per batch, not per bet: a repeat of a clientBetId placed nothing.
        metrics.BETS_PLACED.inc(sum(1 for a in answers if isinstance(a, PlacedBet) and a.created))
        for (_, future, _), answer in zip(batch, answers, strict=True):
            if future.done():
                continue  # the asker is gone (socket closed); the bet stands all the same
            if isinstance(answer, GameError):
                future.set_exception(answer)
            else:
                future.set_result(answer)
        # After every answer: the bets are written whatever happens here.
        if self.on_placed is not None:
            for answer in answers:
                if isinstance(answer, PlacedBet) and answer.created:
                    self.on_placed(answer.bet)

    def drain(self) -> None:
        """At shutdown: bets still queued were never sent, so they are refused, not lost."""
        while self._queue:
            _, future, _ = self._queue.popleft()
            future.cancel()


# The most (user, clientBetId) pairs one lookup of placed bets asks for.
MAX_LOOKUP = 500

Asked = tuple[tuple[uuid.UUID, str], "asyncio.Future[PlacedBet | None]"]


class PlacedLookup:
    """Finds the bet already placed under a clientBetId, for a bet about to be refused as
    RATE_LIMITED (which promises "not written"): a repeat of a written bet gets that bet instead.

    Refusals come in bursts past capacity, so the pairs asked while one query is in flight are
    looked up together in the next: one query per burst, not one per refused bet.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._asked: list[Asked] = []
        self._looking = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.queries = 0

    async def find(self, user_id: uuid.UUID, client_bet_id: str) -> PlacedBet | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[PlacedBet | None] = loop.create_future()
        self._asked.append(((user_id, client_bet_id), future))
        if not self._looking:
            self._looking = True
            task = loop.create_task(self._look_up())
            self._tasks.add(task)  # held until done, so it is never collected mid-flight
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _look_up(self) -> None:
        try:
            while self._asked:
                batch, self._asked = self._asked[:MAX_LOOKUP], self._asked[MAX_LOOKUP:]
                self.queries += 1
                try:
                    found = await bets.placed_bets(self.pool, [pair for pair, _ in batch])
                except Exception as error:  # noqa: BLE001 - every asker gets the failure
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(_answer_for(error))
                    continue
                for pair, future in batch:
                    if not future.done():
                        future.set_result(found.get(pair))
        finally:
            self._looking = False


class Betting:
    def __init__(
        self, pool: asyncpg.Pool, rules: GameRules, notifier: Notifier, batcher: BetBatcher
    ) -> None:
        self.pool = pool
        self.rules = rules
        self.notifier = notifier
        self.batcher = batcher
        self.placed = PlacedLookup(pool)

    async def placed_before(self, user_id: uuid.UUID, client_bet_id: str) -> PlacedBet | None:
        """The bet already placed under this clientBetId, if any: what a repeat is answered
        before any refusal that would say "not written" (RATE_LIMITED)."""
        return await self.placed.find(user_id, client_bet_id)

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
            try:
                placed = await self.batcher.place(request.with_amount(stake))
            except RateLimited:
                # Refused unwritten (the queue is backlogged, or the bet waited past its
                # deadline); a repeat of a bet written before gets that bet instead.
                original = await self.placed_before(request.user_id, request.client_bet_id)
                if original is None:
                    raise
                placed = original
        if placed.created:
            # Only a new bet moved the balance; a repeat of its clientBetId changed nothing.
            self.notifier.balance_changed(
                request.user_id, placed.balance, placed.balance_version, "bet", except_asker=asker
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
