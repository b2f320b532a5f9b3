"""Settling a resolved market: the status transition, then its open bets in chunked transactions.

Invariants kept here:
- A market settles once: its transition `open|closed -> resolved|cancelled` is the guard, so a
  repeated or concurrent resolution finds no row and settles nothing.
- A bet leaves 'open' exactly once (`UPDATE ... WHERE status = 'open' RETURNING`), and its payout
  or refund ledger row commits in the same transaction as that change.
- Every ledger row's balance_after is the user's balance right after it: users are locked
  (ORDER BY id, so concurrent settlements cannot deadlock) before their balances are read.
- `markets.settled_at` is set in the transaction that leaves no open bet behind. A crash between
  chunks leaves the market resolved/cancelled with settled_at NULL; `settle_pending` finishes it.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final

import asyncpg

from game.markets import Resolution, Side
from game.settlement import settle_bet
from storage.database import Connection, Executor
from storage.markets import MARKET_COLUMNS
from storage.rows import Bet, Market

logger = logging.getLogger("thisthat.settlement")

CHUNK_SIZE: Final = 1000

# Markets that may have ended: closed, past their end time, or missing from the latest listing.
# MARKET_COLUMNS is a constant column list, never input.
SELECT_TO_RESOLVE: Final = f"""
SELECT {MARKET_COLUMNS} FROM markets
WHERE status IN ('open', 'closed')
  AND (status = 'closed' OR ends_at <= $1 OR source_id = ANY($2::text[]))
"""  # noqa: S608

TRANSITION_MARKET: Final = """
UPDATE markets
SET status = CASE WHEN $2::text = 'cancelled' THEN 'cancelled' ELSE 'resolved' END,
    resolved_side = CASE WHEN $2::text = 'cancelled' THEN NULL ELSE $2::text END,
    resolved_at = $3, updated_at = $3
WHERE id = $1 AND status IN ('open', 'closed')
RETURNING *
"""

INSERT_OUTBOX: Final = """
INSERT INTO leaderboard_outbox (market_id) VALUES ($1) ON CONFLICT (market_id) DO NOTHING
"""

# Serialises chunk workers of one market (any node); bets wait on it too (their FOR SHARE).
LOCK_UNSETTLED_MARKET: Final = """
SELECT * FROM markets
WHERE id = $1 AND status IN ('resolved', 'cancelled') AND settled_at IS NULL
FOR UPDATE
"""

SELECT_UNSETTLED_MARKETS: Final = """
SELECT id FROM markets
WHERE status IN ('resolved', 'cancelled') AND settled_at IS NULL
ORDER BY resolved_at NULLS FIRST, id
"""

SELECT_OPEN_CHUNK: Final = """
SELECT id, user_id, side, amount, potential_payout FROM bets
WHERE market_id = $1 AND status = 'open'
LIMIT $2
FOR UPDATE
"""

# With each balance its version, the seq of the user's newest ledger row (storage/migrations/0009).
LOCK_USERS: Final = """
SELECT u.id, u.balance,
       coalesce((SELECT seq FROM ledger l WHERE l.user_id = u.id ORDER BY seq DESC LIMIT 1), 0)
           AS balance_version
FROM users u WHERE u.id = ANY($1::uuid[]) ORDER BY u.id FOR UPDATE
"""

SETTLE_BETS: Final = """
UPDATE bets AS b
SET status = s.status, payout = s.payout, settled_at = $4
FROM unnest($1::uuid[], $2::text[], $3::numeric[]) AS s (id, status, payout)
WHERE b.id = s.id AND b.status = 'open'
RETURNING b.*
"""

INSERT_SETTLEMENT_LEDGER: Final = """
INSERT INTO ledger (user_id, kind, amount, balance_after, bet_id)
SELECT r.user_id, r.kind, r.amount, r.balance_after, r.bet_id
FROM unnest($1::uuid[], $2::text[], $3::numeric[], $4::numeric[], $5::uuid[])
     WITH ORDINALITY AS r (user_id, kind, amount, balance_after, bet_id, ord)
ORDER BY r.ord
RETURNING bet_id, seq
"""

# Settled bets no longer count against the cap: their potential payouts leave the open total.
SET_BALANCES: Final = """
UPDATE users AS u SET balance = s.balance, open_potential_payout = u.open_potential_payout - s.released
FROM unnest($1::uuid[], $2::numeric[], $3::numeric[]) AS s (id, balance, released)
WHERE u.id = s.id
"""

MARK_SETTLED: Final = """
UPDATE markets SET settled_at = $2, updated_at = $2
WHERE id = $1 AND settled_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM bets WHERE market_id = $1 AND status = 'open')
RETURNING id
"""


@dataclass(frozen=True, slots=True)
class SettledBet:
    """One bet settled by this call: what it paid and the user's balance right after it, with
    that balance's version (the seq of the ledger row that left it)."""

    user_id: uuid.UUID
    bet: Bet
    payout: Decimal
    balance: Decimal
    balance_version: int


@dataclass(slots=True)
class SettlementResult:
    """What one call settled. `market` is None when the market was not this call's to settle."""

    market_id: uuid.UUID
    market: Market | None
    resolution: Resolution | None
    bets: list[SettledBet] = field(default_factory=list)
    complete: bool = False  # every bet of the market is settled (settled_at is set)

    def final_balances(self) -> dict[uuid.UUID, tuple[Decimal, int]]:
        """Each user's balance, and its version, after the last of their bets settled here."""
        return {
            settled.user_id: (settled.balance, settled.balance_version) for settled in self.bets
        }


def resolution_of(market: Market) -> Resolution:
    if market.status == "cancelled":
        return Resolution.CANCELLED
    # The transition to 'resolved' sets the side in the same statement.
    assert market.resolved_side is not None
    return Resolution(market.resolved_side)


async def markets_to_resolve(
    connection: Executor, now: datetime, unlisted_source_ids: Sequence[str]
) -> list[Market]:
    """The markets whose upstream outcome the resolution job asks about."""
    rows = await connection.fetch(SELECT_TO_RESOLVE, now, list(unlisted_source_ids))
    return [Market.from_record(row) for row in rows]


async def settle_market(
    pool: asyncpg.Pool,
    market_id: uuid.UUID,
    resolution: Resolution,
    now: datetime,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> SettlementResult:
    """Resolve a market and settle all its open bets; a second call for it settles nothing.

    The first transaction flips the status and settles the first chunk; each further chunk is its
    own transaction, until no open bet is left.
    """
    async with pool.acquire() as connection, connection.transaction():
        transitioned = await connection.fetchrow(
            TRANSITION_MARKET, market_id, resolution.value, now
        )
        if transitioned is None:
            return SettlementResult(market_id, None, None)
        market = Market.from_record(transitioned)
        await connection.execute(INSERT_OUTBOX, market_id)
        result = SettlementResult(market_id, market, resolution)
        result.complete = await _settle_chunk(
            connection, market_id, resolution, now, chunk_size, result
        )
    if not result.complete:
        await _finish(pool, market_id, now, chunk_size, result)
    return result


async def settle_pending(
    pool: asyncpg.Pool, now: datetime, *, chunk_size: int = CHUNK_SIZE
) -> list[SettlementResult]:
    """Finish every market left resolved/cancelled with open bets (a crash, or another node)."""
    results = []
    for market_id in [row["id"] for row in await pool.fetch(SELECT_UNSETTLED_MARKETS)]:
        result = SettlementResult(market_id, None, None)
        try:
            await _finish(pool, market_id, now, chunk_size, result)
        except asyncpg.PostgresError:
            # One market that cannot settle (its chunk rolled back) must not hold up the others;
            # it is retried on the next run.
            logger.exception("settling a pending market failed", extra={"marketId": str(market_id)})
        if result.bets or result.complete:
            results.append(result)
    return results


async def _finish(
    pool: asyncpg.Pool,
    market_id: uuid.UUID,
    now: datetime,
    chunk_size: int,
    result: SettlementResult,
) -> None:
    # Every round settles at least one bet or ends the loop, so it terminates.
    while True:
        async with pool.acquire() as connection, connection.transaction():
            locked = await connection.fetchrow(LOCK_UNSETTLED_MARKET, market_id)
            if locked is None:
                return  # settled meanwhile (by another worker), or not resolved at all
            market = Market.from_record(locked)
            if result.market is None:
                result.market = market
                result.resolution = resolution_of(market)
            settled_before = len(result.bets)
            result.complete = await _settle_chunk(
                connection, market_id, resolution_of(market), now, chunk_size, result
            )
        if result.complete or len(result.bets) == settled_before:
            return


async def _settle_chunk(
    connection: Connection,
    market_id: uuid.UUID,
    resolution: Resolution,
    now: datetime,
    chunk_size: int,
    result: SettlementResult,
) -> bool:
    """Settle up to `chunk_size` open bets of a locked market; True when none is left open."""
    chunk = await connection.fetch(SELECT_OPEN_CHUNK, market_id, chunk_size)
    if chunk:
        outcomes = {
            row["id"]: settle_bet(
                Side(row["side"]), row["amount"], row["potential_payout"], resolution
            )
            for row in chunk
        }
        user_ids = sorted({row["user_id"] for row in chunk})
        locked = await connection.fetch(LOCK_USERS, user_ids)
        balances = {row["id"]: row["balance"] for row in locked}
        versions = {row["id"]: row["balance_version"] for row in locked}
        ids = list(outcomes)
        settled_rows = await connection.fetch(
            SETTLE_BETS,
            ids,
            [outcomes[i].status.value for i in ids],
            [outcomes[i].payout for i in ids],
            now,
        )
        settled = [Bet.from_record(row) for row in settled_rows]
        ledger_rows: list[tuple[uuid.UUID, str, Decimal, Decimal, uuid.UUID]] = []
        per_user: dict[uuid.UUID, list[Bet]] = defaultdict(list)
        for bet in sorted(settled, key=lambda bet: bet.id):
            per_user[bet.user_id].append(bet)
        balance_after: dict[uuid.UUID, Decimal] = {}
        for user_id in sorted(per_user):
            for bet in per_user[user_id]:
                outcome = outcomes[bet.id]
                balances[user_id] += outcome.payout
                balance_after[bet.id] = balances[user_id]
                if outcome.ledger_kind is not None:
                    ledger_rows.append(
                        (user_id, outcome.ledger_kind, outcome.payout, balances[user_id], bet.id)
                    )
        seqs: dict[uuid.UUID, int] = {}
        if ledger_rows:
            inserted = await connection.fetch(
                INSERT_SETTLEMENT_LEDGER, *map(list, zip(*ledger_rows, strict=True))
            )
            seqs = {row["bet_id"]: row["seq"] for row in inserted}
        for user_id in sorted(per_user):
            for bet in per_user[user_id]:
                # A lost bet writes no ledger row: the balance, and its version, stay as they were.
                versions[user_id] = seqs.get(bet.id, versions[user_id])
                result.bets.append(
                    SettledBet(
                        user_id,
                        bet,
                        outcomes[bet.id].payout,
                        balance_after[bet.id],
                        versions[user_id],
                    )
                )
        changed = sorted(per_user)
        released = [
            sum((bet.potential_payout for bet in per_user[user_id]), Decimal(0))
            for user_id in changed
        ]
        await connection.execute(
            SET_BALANCES, changed, [balances[user_id] for user_id in changed], released
        )
    return await connection.fetchval(MARK_SETTLED, market_id, now) is not None
