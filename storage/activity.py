"""Market activity as anyone may read it: a market's recent bets, newest first, and the names
their players show (none for a player who hides it).

No bet id, user id or balance leaves this module: a page's position is the time of its last bet
and how many bets of that same time it has shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Final, Self

import asyncpg
import msgspec

from storage.database import Executor

# The name a player shows in activity: NULL when they hide it. Used as `u` over users.
SHOWN_NAME: Final = "CASE WHEN u.anonymous THEN NULL ELSE u.username END"

SELECT_FIRST_PAGE: Final = f"""
SELECT b.side, b.amount, b.odds, b.placed_at, {SHOWN_NAME} AS username
FROM bets b JOIN users u ON u.id = b.user_id
WHERE b.market_id = $1
ORDER BY b.placed_at DESC, b.id DESC
LIMIT $2
"""  # noqa: S608 - a constant fragment, no input

# After a position (time, shown): the bets of that very time past the first `shown` of them, then
# the older ones. A bet batch commits many bets with one time, so the time alone is no position;
# the offset only ever skips bets of that one time, however large a client makes it.
SELECT_NEXT_PAGE: Final = f"""
SELECT b.side, b.amount, b.odds, b.placed_at, {SHOWN_NAME} AS username
FROM (
    (SELECT id, user_id, side, amount, odds, placed_at FROM bets
     WHERE market_id = $1 AND placed_at = $2
     ORDER BY id DESC OFFSET $3 LIMIT $4)
    UNION ALL
    (SELECT id, user_id, side, amount, odds, placed_at FROM bets
     WHERE market_id = $1 AND placed_at < $2
     ORDER BY placed_at DESC, id DESC LIMIT $4)
) b JOIN users u ON u.id = b.user_id
ORDER BY b.placed_at DESC, b.id DESC
LIMIT $4
"""  # noqa: S608 - a constant fragment, no input

SELECT_SHOWN_NAMES: Final = f"""
SELECT u.id, {SHOWN_NAME} AS username FROM users u WHERE u.id = ANY($1::uuid[])
"""  # noqa: S608 - a constant fragment, no input

# (the time of the last bet shown, how many bets of exactly that time have been shown)
Position = tuple[datetime, int]


class ActivityBet(msgspec.Struct, frozen=True):
    """A bet as the market's activity shows it; `username` is None for a player who hides it.

    A frozen msgspec Struct, as rows.Bet: one is built for every bet announced.
    """

    username: str | None
    side: str
    amount: Decimal
    odds: Decimal
    placed_at: datetime

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(
            record["username"],
            record["side"],
            record["amount"],
            record["odds"],
            record["placed_at"],
        )


async def recent_bets(
    pool: Executor, market_id: uuid.UUID, after: Position | None, limit: int
) -> list[ActivityBet]:
    """Up to `limit` + 1 bets newest first, after `after`: the extra one says another page exists."""
    if after is None:
        rows = await pool.fetch(SELECT_FIRST_PAGE, market_id, limit + 1)
    else:
        placed_at, shown = after
        rows = await pool.fetch(SELECT_NEXT_PAGE, market_id, placed_at, shown, limit + 1)
    return [ActivityBet.from_record(row) for row in rows]


async def shown_names(pool: Executor, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """The name each player shows in activity (None: hidden); players gone are left out."""
    rows = await pool.fetch(SELECT_SHOWN_NAMES, list(user_ids))
    return {row["id"]: row["username"] for row in rows}
