"""Placing bets (the `place_bets` database function, one round trip per batch) and reading a player's bets."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

import asyncpg
import msgspec

from game.bets import BetRequest, validate_amount
from game.errors import (
    BalanceCapExceeded,
    GameError,
    InsufficientCredits,
    MarketClosed,
    MarketNotFound,
    OddsChanged,
    OddsStale,
    UserGone,
)
from game.markets import Side
from game.rules import GameRules
from storage.database import Executor
from storage.rows import Bet

# The bet rules execute in the database (storage/migrations/0004), under the market and user
# locks; game.bets states them in Python as the oracle of a parity test, nothing more.
#
# The bet comes back as plain columns, `(bet).*`, not as one composite value: asyncpg decodes a
# composite field by field with a type check each (0.3-0.5 us more per bet in one comparison).
CALL_PLACE_BET: Final = """
SELECT code, detail, current_odds, new_balance, balance_version, (bet).*
FROM place_bet($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""

CALL_PLACE_BETS: Final = """
SELECT ord, code, detail, current_odds, new_balance, balance_version, (bet).*
FROM place_bets($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""

# The balance a repeat answers is the user's balance now: their newest ledger row's, with its seq
# as the version (storage/migrations/0009).
SELECT_BET_BY_CLIENT_ID: Final = """
SELECT b AS bet, l.balance_after AS balance, l.seq AS balance_version
FROM bets b
CROSS JOIN LATERAL (SELECT balance_after, seq FROM ledger
                    WHERE user_id = b.user_id ORDER BY seq DESC LIMIT 1) l
WHERE b.user_id = $1 AND b.client_bet_id = $2
"""

# The bets already placed under some (user, clientBetId) pairs, with each user's balance.
SELECT_BETS_BY_CLIENT_IDS: Final = """
SELECT b AS bet, l.balance_after AS balance, l.seq AS balance_version
FROM unnest($1::uuid[], $2::text[]) AS asked(user_id, client_bet_id)
JOIN bets b ON b.user_id = asked.user_id AND b.client_bet_id = asked.client_bet_id
CROSS JOIN LATERAL (SELECT balance_after, seq FROM ledger
                    WHERE user_id = b.user_id ORDER BY seq DESC LIMIT 1) l
"""

# Newest first; the cursor is the (placed_at, id) of the last bet of the previous page.
SELECT_BETS_PAGE: Final = """
SELECT * FROM bets
WHERE user_id = $1
  AND ($2::text = 'all' OR ($2 = 'open') = (status = 'open'))
  AND ($3::timestamptz IS NULL OR (placed_at, id) < ($3, $4::uuid))
ORDER BY placed_at DESC, id DESC
LIMIT $5
"""

SELECT_OPEN_BETS: Final = """
SELECT * FROM bets WHERE user_id = $1 AND status = 'open' ORDER BY placed_at DESC, id DESC
"""

BetFilter = Literal["open", "settled", "all"]

logger = logging.getLogger("thisthat.bets")

# Every writer takes market rows, then user rows, each in id order, so a deadlock should never
# happen; if one ever does, PostgreSQL rolled the whole batch back and it is simply run again.
DEADLOCK_ATTEMPTS: Final = 5


# Frozen msgspec Structs, not dataclasses: one of each is built for every bet (see rows.Bet).
class PlacedBet(msgspec.Struct, frozen=True):
    bet: Bet
    balance: Decimal
    # The seq of the ledger row that left `balance`: higher is newer (docs/protocol.md).
    balance_version: int
    # False for a repeat of a clientBetId: the original bet, and nothing was debited.
    created: bool


async def place_bets(
    pool: Executor, requests: list[BetRequest], rules: GameRules
) -> list[PlacedBet | GameError]:
    """Place many bets in one transaction and one round trip; each gets its own answer, in order.

    A refusal refuses only its own bet. If the batch as a whole fails (a deadlock, a broken
    connection), nothing of it was committed and the caller may retry the bets one by one.
    """
    columns = list(
        zip(
            *(
                (
                    r.user_id,
                    r.market_id,
                    r.client_bet_id,
                    r.side.value,
                    r.amount,
                    r.expected_odds,
                    r.max_slippage,
                )
                for r in requests
            ),
            strict=True,
        )
    )
    rows = await _fetch_again_on_deadlock(
        pool,
        CALL_PLACE_BETS,
        *(list(column) for column in columns),
        timedelta(seconds=rules.odds_max_age_s),
        rules.max_balance,
    )
    answers: list[PlacedBet | GameError] = []
    for request, row in zip(requests, rows, strict=True):
        code = row["code"]
        if code in ("placed", "duplicate"):
            answers.append(
                PlacedBet(
                    Bet.from_record(row),
                    row["new_balance"],
                    row["balance_version"],
                    created=code == "placed",
                )
            )
        else:
            answers.append(_refusal(code, row, request.amount, rules))
    return answers


async def place_bet(
    pool: Executor,
    *,
    user_id: uuid.UUID,
    market_id: uuid.UUID,
    client_bet_id: str,
    side: Side,
    amount: Decimal,
    expected_odds: Decimal | None,
    max_slippage: Decimal,
    rules: GameRules,
) -> PlacedBet:
    """Place one bet, or raise the GameError that refused it (nothing is written then)."""
    try:
        stake = validate_amount(amount, rules)
    except GameError:
        # Idempotency holds whatever the payload: a repeat with a bad amount still gets its bet.
        original = await pool.fetchrow(SELECT_BET_BY_CLIENT_ID, user_id, client_bet_id)
        if original is not None:
            return PlacedBet(
                Bet.from_record(original["bet"]),
                original["balance"],
                original["balance_version"],
                created=False,
            )
        raise
    rows = await _fetch_again_on_deadlock(
        pool,
        CALL_PLACE_BET,
        user_id,
        market_id,
        client_bet_id,
        side.value,
        stake,
        expected_odds,
        max_slippage,
        timedelta(seconds=rules.odds_max_age_s),
        rules.max_balance,
    )
    row = rows[0]
    code = row["code"]
    if code in ("placed", "duplicate"):
        return PlacedBet(
            Bet.from_record(row),
            row["new_balance"],
            row["balance_version"],
            created=code == "placed",
        )
    raise _refusal(code, row, stake, rules)


async def placed_bets(
    pool: Executor, asked: list[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], PlacedBet]:
    """The bets already placed under these (user id, clientBetId) pairs, as a repeat answers them
    (`created` False); pairs with no bet are left out."""
    if not asked:
        return {}
    users, client_bet_ids = zip(*asked, strict=True)
    rows = await pool.fetch(SELECT_BETS_BY_CLIENT_IDS, list(users), list(client_bet_ids))
    found = {}
    for row in rows:
        bet = Bet.from_record(row["bet"])
        found[(bet.user_id, bet.client_bet_id)] = PlacedBet(
            bet, row["balance"], row["balance_version"], created=False
        )
    return found


async def _fetch_again_on_deadlock(pool: Executor, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run a one-statement transaction, again if PostgreSQL broke a deadlock by aborting it."""
    in_transaction = not isinstance(pool, asyncpg.Pool) and pool.is_in_transaction()
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            return list(await pool.fetch(query, *args))
        except asyncpg.DeadlockDetectedError:
            # Inside a caller's transaction the abort is the caller's to handle.
            if in_transaction or attempt == DEADLOCK_ATTEMPTS:
                raise
            logger.warning("bet batch deadlocked; placing it again", extra={"attempt": attempt})
            await asyncio.sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311 - jitter only
    raise AssertionError("unreachable")


def _refusal(code: str, row: asyncpg.Record, stake: Decimal, rules: GameRules) -> GameError:
    """The catalogue's refusal for the outcome code `place_bet`/`place_bets` answered."""
    detail = row["detail"]
    if code == "market_not_found":
        return MarketNotFound()
    if code == "market_closed":
        return MarketClosed(detail)
    if code == "odds_stale":
        return OddsStale(detail, rules.odds_max_age_s)
    if code == "odds_changed":
        return OddsChanged(row["current_odds"], detail)
    if code == "insufficient_credits":
        return InsufficientCredits(row["new_balance"], stake)
    if code == "balance_cap_exceeded":
        return BalanceCapExceeded.for_bet(Decimal(detail), rules.max_balance)
    if code == "user_not_found":
        return UserGone()
    raise AssertionError(f"place_bet answered an unknown code {code!r}")


async def list_bets(
    pool: Executor,
    user_id: uuid.UUID,
    status: BetFilter,
    cursor: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Bet]:
    """Up to `limit` + 1 bets, newest first: the extra one tells the caller another page exists."""
    placed_at, bet_id = cursor if cursor is not None else (None, None)
    rows = await pool.fetch(SELECT_BETS_PAGE, user_id, status, placed_at, bet_id, limit + 1)
    return [Bet.from_record(row) for row in rows]


async def open_bets(pool: Executor, user_id: uuid.UUID) -> list[Bet]:
    return [Bet.from_record(row) for row in await pool.fetch(SELECT_OPEN_BETS, user_id)]
