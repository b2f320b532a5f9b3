"""Market activity: a market's recent bets, paged for anyone (`market:activity`) and announced
live to the market's subscribers in batches.

The bet path only appends each new bet to its market's buffer on this node; every
MARKET_ACTIVITY_PUSH_INTERVAL_MS a flush announces each market's buffered bets as one batch. So
a market taking hundreds of bets a second costs each subscriber a few pushes a second, not one
per bet. Each node announces the bets it committed; the announcements reach every node.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import asyncpg

from services.notifier import Notifier
from storage import activity
from storage.activity import ActivityBet, Position
from storage.rows import Bet

# The most bets one announcement of a market carries: the newest; the older ones of the interval
# are only counted (they are in the pages).
MAX_ANNOUNCED_BETS: Final = 20


@dataclass(frozen=True, slots=True)
class ActivityPage:
    """Bets newest first, and where the next page starts (None: this was the last)."""

    bets: list[ActivityBet]
    next_position: Position | None


@dataclass(slots=True)
class _Buffered:
    """A market's bets since the last flush: the newest `maxlen`, and how many there were."""

    bets: deque[Bet]
    placed: int = field(default=0)


class MarketActivity:
    def __init__(
        self, pool: asyncpg.Pool, notifier: Notifier, *, max_announced: int = MAX_ANNOUNCED_BETS
    ) -> None:
        self.pool = pool
        self.notifier = notifier
        self.max_announced = max_announced
        self._buffered: dict[uuid.UUID, _Buffered] = {}

    def record(self, bet: Bet) -> None:
        """A new bet committed. Runs on the bet path: it appends and nothing else."""
        buffered = self._buffered.get(bet.market_id)
        if buffered is None:
            buffered = self._buffered[bet.market_id] = _Buffered(deque(maxlen=self.max_announced))
        buffered.bets.append(bet)
        buffered.placed += 1

    async def flush(self) -> int:
        """Announce each market's bets since the last flush, newest first, as one batch a market;
        returns how many bets were announced. One query names the players of all of them."""
        if not self._buffered:
            return 0
        buffered, self._buffered = self._buffered, {}
        players = {bet.user_id for entry in buffered.values() for bet in entry.bets}
        names = await activity.shown_names(self.pool, players)
        announced = 0
        for market_id, entry in buffered.items():
            bets = [
                ActivityBet(names.get(bet.user_id), bet.side, bet.amount, bet.odds, bet.placed_at)
                for bet in reversed(entry.bets)
            ]
            self.notifier.market_activity(market_id, bets, omitted=entry.placed - len(bets))
            announced += len(bets)
        return announced

    async def page(self, market_id: uuid.UUID, after: Position | None, limit: int) -> ActivityPage:
        """Up to `limit` bets newest first, after the position a previous page ended at."""
        rows = await activity.recent_bets(self.pool, market_id, after, limit)
        bets = rows[:limit]
        if len(rows) <= limit:
            return ActivityPage(bets, None)
        last = bets[-1].placed_at
        shown = sum(1 for bet in bets if bet.placed_at == last)
        if after is not None and after[0] == last:
            shown += after[1]  # the page went on within the same time
        return ActivityPage(bets, (last, shown))
