"""The use cases of one process, built once from its resources and handed to the transport."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import redis.asyncio as redis

from game.rules import GameRules
from services.accounts import Accounts, Passwords, TokenMint
from services.activity import MAX_ANNOUNCED_BETS, MarketActivity
from services.betting import BetBatcher, Betting, QueueAdmission
from services.leaderboards import Leaderboards, Spawn
from services.markets import Markets
from services.notifier import Notifier
from services.settlement import Settlement
from services.wallet import Wallet
from storage.ratelimit import LoginGuard


@dataclass(frozen=True, slots=True)
class Services:
    rules: GameRules
    accounts: Accounts
    batcher: BetBatcher
    betting: Betting
    activity: MarketActivity
    wallet: Wallet
    leaderboards: Leaderboards
    settlement: Settlement
    markets: Markets


@dataclass(frozen=True, slots=True)
class SignIn:
    """What the accounts use case borrows from the transport: hashing, signing, login limits."""

    passwords: Passwords
    tokens: TokenMint
    login_guard: LoginGuard
    refresh_grace: timedelta


def build_services(
    pool: asyncpg.Pool,
    client: redis.Redis,
    rules: GameRules,
    notifier: Notifier,
    spawn: Spawn,
    sign_in: SignIn,
    admission: QueueAdmission | None = None,
    *,
    announce_activity: bool = True,
    max_announced_bets: int = MAX_ANNOUNCED_BETS,
) -> Services:
    """`announce_activity` False: new bets are not kept for `market:activity` pushes (the
    pages still answer), and nothing must flush `activity`."""
    activity = MarketActivity(pool, notifier, max_announced=max_announced_bets)
    batcher = BetBatcher(
        pool,
        rules,
        admission=admission,
        on_placed=activity.record if announce_activity else None,
    )
    boards = Leaderboards(pool, client, notifier, spawn)
    settlement = Settlement(pool, client, notifier, boards)
    return Services(
        rules=rules,
        accounts=Accounts(
            pool,
            rules,
            sign_in.passwords,
            sign_in.tokens,
            sign_in.login_guard,
            sign_in.refresh_grace,
        ),
        batcher=batcher,
        betting=Betting(pool, rules, notifier, batcher),
        activity=activity,
        wallet=Wallet(pool, rules, notifier),
        leaderboards=boards,
        settlement=settlement,
        markets=Markets(pool, notifier, settlement.resolve),
    )
