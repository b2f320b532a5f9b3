"""Balances, the daily reward and ledger history pages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Final

import asyncpg

from game.errors import BalanceCapExceeded
from game.rewards import reward_already_claimed
from storage.database import Executor
from storage.rows import LedgerEntry, WalletState

INSERT_REWARD_CLAIM: Final = """
INSERT INTO daily_rewards (user_id, day, amount) VALUES ($1, $2, $3)
ON CONFLICT (user_id, day) DO NOTHING
RETURNING user_id
"""

# The cap guard sits in the UPDATE itself (under the user's row lock, which bets take too), and
# counts open bets' potential payouts, so no later settlement can push the balance past the cap.
CREDIT_REWARD: Final = """
WITH credited AS (
    UPDATE users SET balance = balance + $2
    WHERE id = $1 AND balance + $2 + open_potential_payout <= $3
    RETURNING id, balance
)
INSERT INTO ledger (user_id, kind, amount, balance_after)
SELECT id, 'daily_reward', $2, balance FROM credited
RETURNING balance_after, seq
"""

SELECT_WALLET: Final = """
SELECT u.balance, u.open_potential_payout,
       (SELECT coalesce(sum(b.amount), 0) FROM bets b WHERE b.user_id = u.id AND b.status = 'open') AS open_stake,
       coalesce((SELECT l.seq FROM ledger l WHERE l.user_id = u.id ORDER BY l.seq DESC LIMIT 1), 0)
           AS balance_version
FROM users u
WHERE u.id = $1
"""

SELECT_HISTORY_PAGE: Final = """
SELECT id, seq, kind, amount, balance_after, bet_id, created_at
FROM ledger
WHERE user_id = $1 AND ($2::bigint IS NULL OR seq < $2)
ORDER BY seq DESC
LIMIT $3
"""


async def claim_daily_reward(
    pool: asyncpg.Pool, user_id: uuid.UUID, day: date, amount: Decimal, max_balance: Decimal
) -> tuple[Decimal, int]:
    """Pay the reward once per (user, UTC day); returns the new balance and its version, or raises
    RewardAlreadyClaimed (that day is taken) or BalanceCapExceeded (nothing is paid then).

    The unique (user, day) key and the balance update share one transaction: of many concurrent
    claims, one inserts the key and the others wait on it, then find it taken.
    """
    async with pool.acquire() as connection, connection.transaction():
        claimed = await connection.fetchval(INSERT_REWARD_CLAIM, user_id, day, amount)
        if claimed is None:
            raise reward_already_claimed(datetime.combine(day, time(0), UTC))
        credited = await connection.fetchrow(CREDIT_REWARD, user_id, amount, max_balance)
        if credited is None:
            # Raising rolls the claim back: a refused reward can be claimed later the same day.
            raise BalanceCapExceeded.for_reward(amount, max_balance)
        return Decimal(credited["balance_after"]), credited["seq"]


async def get_wallet(connection: Executor, user_id: uuid.UUID) -> WalletState | None:
    row = await connection.fetchrow(SELECT_WALLET, user_id)
    return None if row is None else WalletState.from_record(row)


async def history_page(
    connection: Executor, user_id: uuid.UUID, before_seq: int | None, limit: int
) -> list[LedgerEntry]:
    """Up to `limit` + 1 entries, newest first: the extra one tells the caller another page exists."""
    rows = await connection.fetch(SELECT_HISTORY_PAGE, user_id, before_seq, limit + 1)
    return [LedgerEntry.from_record(row) for row in rows]


# One scan of users. width_bucket over the negated bounds (ascending) counts the bounds at or
# above a balance, so a balance equal to a bound lands in that bound's band, as `le` means.
BALANCE_BANDS: Final = """
SELECT width_bucket(-balance, $1::numeric[]) AS band, count(*) AS players, sum(balance) AS total
FROM users GROUP BY band
"""


async def balance_distribution(
    executor: Executor, bounds: Sequence[Decimal]
) -> tuple[list[int], int, Decimal]:
    """(players with balance <= each bound, all players, their credits in total)."""
    negated = sorted(-bound for bound in bounds)
    at_least: dict[int, int] = {}
    players, total = 0, Decimal(0)
    for row in await executor.fetch(BALANCE_BANDS, negated):
        at_least[row["band"]] = row["players"]
        players += row["players"]
        total += row["total"]
    # band = how many bounds are >= the balance; balance <= bounds[i] <=> band >= len - i.
    cumulative = [
        sum(n for band, n in at_least.items() if band >= len(bounds) - i)
        for i in range(len(bounds))
    ]
    return cumulative, players, total
