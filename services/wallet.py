"""The player's money: wallet, ledger history, the daily reward."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from game.errors import UserGone
from game.rewards import next_claim_at, reward_day
from game.rules import GameRules
from services.notifier import Notifier
from storage import wallet
from storage.rows import LedgerEntry, WalletState


@dataclass(frozen=True, slots=True)
class RewardPaid:
    amount: Decimal
    balance: Decimal
    balance_version: int
    next_claim_at: datetime


class Wallet:
    def __init__(self, pool: asyncpg.Pool, rules: GameRules, notifier: Notifier) -> None:
        self.pool = pool
        self.rules = rules
        self.notifier = notifier

    async def wallet(self, user_id: uuid.UUID) -> WalletState:
        row = await wallet.get_wallet(self.pool, user_id)
        if row is None:
            raise UserGone()
        return row

    async def history(
        self, user_id: uuid.UUID, before: int | None, limit: int
    ) -> list[LedgerEntry]:
        """Up to `limit` + 1 ledger entries, newest first: the extra one says more exist."""
        return await wallet.history_page(self.pool, user_id, before, limit)

    async def claim_daily_reward(self, user_id: uuid.UUID, now: datetime) -> RewardPaid:
        """Pay today's reward once; RewardAlreadyClaimed or BalanceCapExceeded refuse it."""
        amount = self.rules.daily_reward_credits
        balance, version = await wallet.claim_daily_reward(
            self.pool, user_id, reward_day(now), amount, self.rules.max_balance
        )
        self.notifier.balance_changed(user_id, balance, version, "reward")
        return RewardPaid(amount, balance, version, next_claim_at(now))
