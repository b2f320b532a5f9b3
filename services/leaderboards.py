"""Leaderboards: reading a board, and announcing changes at most once a second per period across
every node, the last change never lost.

The first change in a second takes a Redis key (SET NX PX 1000) and announces at once. A change
that finds the key taken schedules one trailing announcement per node and period: it waits for
the key to expire and announces the then-current board, so the final state of a burst always
goes out.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import asyncpg
import redis.asyncio as redis

from game.leaderboard import Period, period_key
from services.notifier import Notifier
from storage import keys, leaderboard_pages, leaderboards
from storage.leaderboard_pages import BoardPage
from storage.leaderboards import NameLookups, Standing

logger = logging.getLogger("thisthat.leaderboard")

THROTTLE_MS: Final = 1000
PUSH_SIZE: Final = 20
# A trailing push retries while other nodes keep taking the key; each try waits out one window.
MAX_TRAILING_TRIES: Final = 10
# A read waits at most this long (tries x interval) for another node's rebuild of lost boards.
REBUILD_WAIT_TRIES: Final = 50
REBUILD_WAIT_S: Final = 0.1

# Runs a background coroutine whose reference the runtime holds (aiojobs in the server).
Spawn = Callable[[Coroutine[Any, Any, None], str], Awaitable[object]]


class Leaderboards:
    def __init__(
        self, pool: asyncpg.Pool, client: redis.Redis, notifier: Notifier, spawn: Spawn
    ) -> None:
        self.pool = pool
        self.client = client
        self.notifier = notifier
        self.spawn = spawn
        # Periods with a trailing announcement scheduled on this node.
        self.trailing: set[Period] = set()

    async def board(
        self,
        period: Period,
        limit: int,
        me: uuid.UUID | None = None,
        on_names: NameLookups | None = None,
    ) -> tuple[list[Standing], tuple[int, Decimal] | None]:
        """The current bucket of the period (today UTC, this ISO week, or all time)."""
        now = datetime.now(UTC)
        await self._built(now)
        bucket = period_key(period, now)
        return await leaderboards.top(self.pool, self.client, bucket, limit, me, on_names)

    async def page(
        self,
        period: Period,
        limit: int,
        me: uuid.UUID,
        *,
        offset: int = 0,
        around_me: bool = False,
        on_names: NameLookups | None = None,
    ) -> BoardPage:
        """A page of the period's current bucket from rank `offset + 1`, or centred on `me`, with
        `me`'s own standing and the number of players ranked."""
        now = datetime.now(UTC)
        await self._built(now)
        return await leaderboard_pages.page(
            self.pool,
            self.client,
            period_key(period, now),
            limit,
            offset=offset,
            me=me,
            around_me=around_me,
            on_names=on_names,
        )

    async def _built(self, now: datetime) -> None:
        """Rebuild the boards from the ledger first if Redis lost them (flushed, restarted): an
        empty board is no answer while the ledger knows the standings. While another node
        rebuilds, wait for it a little; past that, read what it has written so far."""
        for _ in range(REBUILD_WAIT_TRIES):
            if await leaderboards.boards_built(self.client):
                return
            if await leaderboards.restore_if_lost(self.pool, self.client, now):
                logger.info("leaderboards rebuilt from the ledger: Redis had lost them")
                return
            await asyncio.sleep(REBUILD_WAIT_S)

    async def changed(self, periods: Iterable[Period] = tuple(Period)) -> None:
        """Tell subscribers of these periods, within the one-a-second budget."""
        for period in periods:
            throttle = keys.leaderboard_throttle(period.value)
            if await self.client.set(throttle, "1", nx=True, px=THROTTLE_MS):
                await self._announce(period)
            elif period not in self.trailing:
                self.trailing.add(period)
                await self.spawn(self._trailing(period), f"leaderboard-trailing-{period.value}")

    async def _trailing(self, period: Period) -> None:
        key = keys.leaderboard_throttle(period.value)
        try:
            for _ in range(MAX_TRAILING_TRIES):
                wait_ms = await self.client.pttl(key)
                await asyncio.sleep(max(int(wait_ms), 10) / 1000)
                if await self.client.set(key, "1", nx=True, px=THROTTLE_MS):
                    # Cleared before reading the board: a change from now on schedules its own.
                    self.trailing.discard(period)
                    await self._announce(period)
                    return
            logger.warning("trailing leaderboard push gave up", extra={"period": period.value})
        except Exception:
            logger.exception("trailing leaderboard push failed", extra={"period": period.value})
        finally:
            self.trailing.discard(period)

    async def _announce(self, period: Period) -> None:
        standings, _ = await self.board(period, PUSH_SIZE)
        self.notifier.leaderboard_changed(period, standings)
