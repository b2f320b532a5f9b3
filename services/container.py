"""The use cases of one process, built once from its resources and handed to the transport."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import redis.asyncio as redis

from game.rules import GameRules
from services.betting import BetBatcher, Betting, QueueAdmission
from services.leaderboards import Leaderboards, Spawn
from services.markets import Markets
from services.notifier import Notifier
from services.settlement import Settlement
from services.wallet import Wallet


@dataclass(frozen=True, slots=True)
class Services:
    rules: GameRules
    batcher: BetBatcher
    betting: Betting
    wallet: Wallet
    leaderboards: Leaderboards
    settlement: Settlement
    markets: Markets


def build_services(
    pool: asyncpg.Pool,
    client: redis.Redis,
    rules: GameRules,
    notifier: Notifier,
    spawn: Spawn,
    admission: QueueAdmission | None = None,
) -> Services:
    batcher = BetBatcher(pool, rules, admission=admission)
    boards = Leaderboards(pool, client, notifier, spawn)
    settlement = Settlement(pool, client, notifier, boards)
    return Services(
        rules=rules,
        batcher=batcher,
        betting=Betting(pool, rules, notifier, batcher),
        wallet=Wallet(pool, rules, notifier),
        leaderboards=boards,
        settlement=settlement,
        markets=Markets(pool, notifier, settlement),
    )
