"""Placing bets and reading them back: the use case behind `bet:place`, `bets:list` and `sync`."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from game.bets import validate_amount
from game.errors import GameError
from game.rules import GameRules
from services import metrics
from services.bet_batcher import BetBatcher
from services.notifier import Notifier
from storage import bets
from storage.bets import BetFilter, BetRequest, PlacedBet


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
    ) -> list[asyncpg.Record]:
        """Up to `limit` + 1 bets, newest first: the extra one says another page exists."""
        return await bets.list_bets(self.pool, user_id, status, cursor, limit)

    async def open_bets(self, user_id: uuid.UUID) -> list[asyncpg.Record]:
        return await bets.open_bets(self.pool, user_id)
