"""What the use cases announce, as an interface: the transport implements it with pushes and rooms.

The application layer says *what* happened (a balance moved, a market changed, a board moved);
server/fanout/announcer.py decides how it reaches sockets on every node. Tests may pass a recorder.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from game.leaderboard import Period
from storage.activity import ActivityBet
from storage.leaderboards import Standing
from storage.rows import Bet, Market

BalanceReason = Literal["bet", "payout", "refund", "reward"]


class Notifier(Protocol):
    def balance_changed(
        self,
        user_id: uuid.UUID,
        balance: Decimal,
        version: int,
        reason: BalanceReason,
        *,
        except_asker: str | None = None,
    ) -> None:
        """Every socket of the user hears the new balance, but the asker whose ack carries it.
        `version` orders a user's balances: the seq of the ledger row that left this one."""

    def bet_settled(self, user_id: uuid.UUID, bet: Bet, balance: Decimal, version: int) -> None: ...

    async def markets_changed(self, rows: Sequence[Market]) -> None:
        """Listings changed: every node's cache reloads them; nothing is pushed."""

    async def odds_changed(self, rows: Sequence[Market], at: datetime) -> None:
        """New odds: caches reload them and each market's subscribers get an `odds` tick."""

    async def odds_touched(self, market_ids: Sequence[uuid.UUID], at: datetime) -> None:
        """Unchanged odds were read again: they are fresh, here and on other nodes."""

    async def market_updated(self, row: Market) -> None:
        """A market's status moved: caches reload it and its subscribers get `market:update`."""

    def leaderboard_changed(self, period: Period, standings: Sequence[Standing]) -> None: ...

    def market_activity(
        self, market_id: uuid.UUID, bets: Sequence[ActivityBet], *, omitted: int
    ) -> None:
        """New bets on a market, newest first, for its subscribers on every node; `omitted` older
        ones of the same interval did not fit in the batch."""
