"""Read-only queries behind the operator's admin view."""

from __future__ import annotations

from typing import Any, Final

import asyncpg

# The markets that finished most recently, with how their bets came out.
RECENT_SETTLEMENTS: Final = """
SELECT m.id, m.question, m.status, m.resolved_side, m.resolved_at, m.settled_at,
       count(b.id) AS bets,
       coalesce(sum(b.amount), 0) AS staked,
       coalesce(sum(b.payout), 0) AS paid
FROM markets m LEFT JOIN bets b ON b.market_id = m.id
WHERE m.status IN ('resolved', 'cancelled')
GROUP BY m.id
ORDER BY m.resolved_at DESC NULLS LAST, m.id
LIMIT $1
"""


async def recent_settlements(pool: asyncpg.Pool, limit: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(RECENT_SETTLEMENTS, limit)
    return [
        {
            "marketId": str(row["id"]),
            "question": row["question"],
            "status": row["status"],
            "resolvedSide": row["resolved_side"],
            "resolvedAt": row["resolved_at"],
            "settledAt": row["settled_at"],
            "bets": row["bets"],
            "staked": row["staked"],
            "paid": row["paid"],
        }
        for row in rows
    ]
