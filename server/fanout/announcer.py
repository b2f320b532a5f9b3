"""The transport side of services/notifier.py: announcements become pushes to rooms on every
node, and market changes reach this node's cache and, through Redis, every other node's."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import redis.asyncio as redis

from game.leaderboard import Period
from server.fanout.market_cache import MarketCache, publish_changes, publish_odds, publish_touched
from server.fanout.pushes import Pushes
from server.fanout.rooms import emit_balance, leaderboard_room, market_room, user_room
from server.wire.views import activity_views, bet_view, entry_view, market_view
from services import metrics
from services.notifier import BalanceReason
from storage.activity import ActivityBet
from storage.leaderboards import Standing
from storage.rows import Bet, Market


class SocketNotifier:
    def __init__(self, pushes: Pushes, cache: MarketCache, client: redis.Redis) -> None:
        self.pushes = pushes
        self.cache = cache
        self.client = client

    def balance_changed(
        self,
        user_id: uuid.UUID,
        balance: Decimal,
        version: int,
        reason: BalanceReason,
        *,
        except_asker: str | None = None,
    ) -> None:
        emit_balance(self.pushes, user_id, balance, version, reason, skip_sid=except_asker)

    def bet_settled(self, user_id: uuid.UUID, bet: Bet, balance: Decimal, version: int) -> None:
        self.pushes.emit(
            "bet:settled",
            {"bet": bet_view(bet), "balance": balance, "balanceVersion": version},
            user_room(user_id),
        )

    async def markets_changed(self, rows: Sequence[Market]) -> None:
        self.cache.apply(rows)
        await publish_changes(self.client, self.cache, [row.id for row in rows])

    async def odds_changed(self, rows: Sequence[Market], at: datetime) -> None:
        self.cache.apply(rows)
        await publish_odds(self.client, self.cache, rows)
        for row in rows:
            # Odds are state: only changes are pushed; a (re)subscribe gets the snapshot.
            self.pushes.emit(
                "odds",
                {
                    "marketId": str(row.id),
                    "thisOdds": row.this_odds,
                    "thatOdds": row.that_odds,
                    "at": at,
                },
                market_room(row.id),
            )
        metrics.ODDS_TICKS.inc(len(rows))

    async def odds_touched(self, market_ids: Sequence[uuid.UUID], at: datetime) -> None:
        self.cache.touch(market_ids, at)
        await publish_touched(self.client, self.cache, market_ids, at)

    async def market_updated(self, row: Market) -> None:
        await self.markets_changed([row])
        self.pushes.emit("market:update", {"market": market_view(row)}, market_room(row.id))

    def leaderboard_changed(self, period: Period, standings: Sequence[Standing]) -> None:
        self.pushes.emit(
            "leaderboard:update",
            {"period": period.value, "entries": [entry_view(entry) for entry in standings]},
            leaderboard_room(period.value),
        )

    def market_activity(
        self, market_id: uuid.UUID, bets: Sequence[ActivityBet], *, omitted: int
    ) -> None:
        # One push per market per flush, encoded once for every subscriber on every node.
        self.pushes.emit(
            "market:activity",
            {
                "marketId": str(market_id),
                "bets": activity_views(bets),
                "omitted": omitted,
            },
            market_room(market_id),
        )
