"""Ledger invariants 1-4 of docs/invariants.md, checked over the whole database (and the leaderboards in Redis)
by `thisthat audit`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

import asyncpg
import redis.asyncio as redis

from game.leaderboard import period_keys
from storage import keys, leaderboards

# Invariant 1: balance = sum of the user's ledger amounts, and 0 <= balance <= cap.
BALANCE_MISMATCHES: Final = """
SELECT u.id, u.username, u.balance, coalesce(sum(l.amount), 0) AS ledger_sum
FROM users u LEFT JOIN ledger l ON l.user_id = u.id
GROUP BY u.id
HAVING u.balance <> coalesce(sum(l.amount), 0) OR u.balance < 0 OR u.balance > $1
"""

# The open potential payout kept on each user (the cap rule reads it) matches the open bets.
OPEN_PAYOUT_MISMATCHES: Final = """
SELECT u.id, u.username, u.open_potential_payout, coalesce(o.total, 0) AS open_total
FROM users u
LEFT JOIN (SELECT user_id, sum(potential_payout) AS total FROM bets WHERE status = 'open' GROUP BY user_id) o
       ON o.user_id = u.id
WHERE u.open_potential_payout <> coalesce(o.total, 0)
"""

# The last ledger row of each user carries the balance it left behind.
BALANCE_AFTER_MISMATCHES: Final = """
SELECT u.id, u.username, u.balance, last.balance_after
FROM users u
JOIN LATERAL (
    SELECT balance_after FROM ledger WHERE user_id = u.id ORDER BY seq DESC LIMIT 1
) last ON true
WHERE last.balance_after <> u.balance
"""

# Invariant 2: one stake row per bet; one payout/refund per settled non-losing bet; none otherwise.
STAKE_MISMATCHES: Final = """
SELECT b.id, count(l.id) AS stakes
FROM bets b LEFT JOIN ledger l ON l.bet_id = b.id AND l.kind = 'bet_stake'
GROUP BY b.id
HAVING count(l.id) <> 1 OR coalesce(sum(-l.amount), 0) <> max(b.amount)
"""

SETTLEMENT_MISMATCHES: Final = """
SELECT b.id, b.status, count(l.id) AS rows, coalesce(sum(l.amount), 0) AS paid, b.payout
FROM bets b LEFT JOIN ledger l ON l.bet_id = b.id AND l.kind IN ('bet_payout', 'bet_refund')
GROUP BY b.id
HAVING (b.status IN ('open', 'lost') AND count(l.id) <> 0)
    OR (b.status IN ('won', 'split', 'refunded') AND
        (count(l.id) <> 1 OR coalesce(sum(l.amount), 0) <> coalesce(b.payout, -1)))
    OR (b.status = 'refunded' AND bool_or(l.kind <> 'bet_refund'))
    OR (b.status IN ('won', 'split') AND bool_or(l.kind <> 'bet_payout'))
"""

# A bet's stake, payout and refund rows move its own player's money.
FOREIGN_BET_ROWS: Final = """
SELECT l.id, l.kind, l.bet_id FROM ledger l JOIN bets b ON b.id = l.bet_id WHERE l.user_id <> b.user_id
"""

# Invariant 3 (no bet settled twice) in the market's terms: a settled market has no open bet.
OPEN_BETS_ON_SETTLED_MARKETS: Final = """
SELECT m.id, count(b.id) AS open_bets
FROM markets m JOIN bets b ON b.market_id = m.id AND b.status = 'open'
WHERE m.settled_at IS NOT NULL
GROUP BY m.id
"""

# Invariant 3: a bet is settled only by its market's resolution, exactly as the rules pay it
# (game.settlement.settle_bet), and only once its market is resolved or cancelled.
SETTLED_AGAINST_RESOLUTION: Final = """
WITH expected AS (
    SELECT b.id, b.status, b.payout, m.status AS market_status, m.resolved_side,
           CASE WHEN m.status = 'cancelled' THEN 'refunded'
                WHEN m.resolved_side = 'split' THEN 'split'
                WHEN m.resolved_side = b.side THEN 'won'
                ELSE 'lost' END AS want_status,
           CASE WHEN m.status = 'cancelled' THEN b.amount
                WHEN m.resolved_side = 'split' THEN trunc(b.potential_payout / 2, 2)
                WHEN m.resolved_side = b.side THEN b.potential_payout
                ELSE 0 END AS want_payout
    FROM bets b JOIN markets m ON m.id = b.market_id
    WHERE b.status <> 'open'
)
SELECT id, status, payout, market_status, resolved_side, want_status, want_payout FROM expected
WHERE market_status NOT IN ('resolved', 'cancelled')
   OR status <> want_status OR payout IS DISTINCT FROM want_payout
"""


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: int
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"invariant {self.invariant} violated for {self.subject}: {self.detail}"


async def check_ledger(connection: asyncpg.Connection, max_balance: Decimal) -> list[Violation]:
    violations: list[Violation] = []
    for row in await connection.fetch(BALANCE_MISMATCHES, max_balance):
        violations.append(
            Violation(
                1,
                f"user {row['username']} ({row['id']})",
                f"balance {row['balance']} but ledger sums to {row['ledger_sum']} (cap {max_balance})",
            )
        )
    for row in await connection.fetch(BALANCE_AFTER_MISMATCHES):
        violations.append(
            Violation(
                1,
                f"user {row['username']} ({row['id']})",
                f"balance {row['balance']} but the last ledger row left {row['balance_after']}",
            )
        )
    for row in await connection.fetch(OPEN_PAYOUT_MISMATCHES):
        violations.append(
            Violation(
                1,
                f"user {row['username']} ({row['id']})",
                f"open potential payout kept as {row['open_potential_payout']} but open bets add up to {row['open_total']}",
            )
        )
    for row in await connection.fetch(STAKE_MISMATCHES):
        violations.append(
            Violation(2, f"bet {row['id']}", f"{row['stakes']} bet_stake rows (or wrong amount)")
        )
    for row in await connection.fetch(SETTLEMENT_MISMATCHES):
        violations.append(
            Violation(
                2,
                f"bet {row['id']}",
                f"status {row['status']} with {row['rows']} payout/refund rows paying {row['paid']} (payout {row['payout']})",
            )
        )
    for row in await connection.fetch(FOREIGN_BET_ROWS):
        violations.append(
            Violation(
                2,
                f"bet {row['bet_id']}",
                f"{row['kind']} row {row['id']} is on another user's ledger",
            )
        )
    for row in await connection.fetch(OPEN_BETS_ON_SETTLED_MARKETS):
        violations.append(
            Violation(3, f"market {row['id']}", f"settled but {row['open_bets']} bets still open")
        )
    for row in await connection.fetch(SETTLED_AGAINST_RESOLUTION):
        violations.append(
            Violation(
                3,
                f"bet {row['id']}",
                f"{row['status']} paying {row['payout']} on a {row['market_status']} market "
                f"(side {row['resolved_side']}); the rules say {row['want_status']} paying {row['want_payout']}",
            )
        )
    return violations


async def check_leaderboards(
    connection: asyncpg.Connection, client: redis.Redis, now: datetime
) -> list[Violation]:
    """Invariant 4: every bucket in Redis, plus all time and the current week and day, holds
    exactly the users with bets settled in it, each scored with the PnL recomputed from the ledger."""
    buckets = set(await leaderboards.stored_buckets(client)) | set(period_keys(now).values())
    violations: list[Violation] = []
    for bucket in sorted(buckets):
        truth = await leaderboards.bucket_pnl_from_ledger(connection, bucket)
        board = await leaderboards.bucket_scores(client, bucket)
        for user_id in sorted(truth.keys() | board.keys()):
            want, have = truth.get(user_id), board.get(user_id)
            if want != have:
                violations.append(
                    Violation(
                        4,
                        f"user {user_id} on leaderboard {bucket}",
                        f"score {'missing' if have is None else have} but the ledger PnL is "
                        f"{'none (no settled bet)' if want is None else want}",
                    )
                )
    return violations


async def check_all(
    connection: asyncpg.Connection, client: redis.Redis, max_balance: Decimal, now: datetime
) -> list[Violation]:
    return await check_ledger(connection, max_balance) + await check_leaderboards(
        connection, client, now
    )


async def record_result(client: redis.Redis, violations: int, at: datetime) -> None:
    """Keep the outcome where every node's /metrics finds it (alerts watch it, not the run)."""
    await client.hset(
        keys.AUDIT_RESULT, mapping={"at": f"{at.timestamp():.3f}", "violations": violations}
    )


async def last_result(client: redis.Redis) -> tuple[float, int]:
    """(unix time, violations) of the last recorded audit; (0, 0) when none was ever recorded."""
    stored = await client.hgetall(keys.AUDIT_RESULT)
    return float(stored.get("at", 0)), int(stored.get("violations", 0))
