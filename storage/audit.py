"""Ledger invariants of DESIGN.md, checked over the whole database by `thisthat audit`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

import asyncpg

# Invariant 1: balance = sum of the user's ledger amounts, and 0 <= balance <= cap.
BALANCE_MISMATCHES: Final = """
SELECT u.id, u.username, u.balance, coalesce(sum(l.amount), 0) AS ledger_sum
FROM users u LEFT JOIN ledger l ON l.user_id = u.id
GROUP BY u.id
HAVING u.balance <> coalesce(sum(l.amount), 0) OR u.balance < 0 OR u.balance > $1
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

# Invariant 3 (no bet settled twice) in the market's terms: a settled market has no open bet.
OPEN_BETS_ON_SETTLED_MARKETS: Final = """
SELECT m.id, count(b.id) AS open_bets
FROM markets m JOIN bets b ON b.market_id = m.id AND b.status = 'open'
WHERE m.settled_at IS NOT NULL
GROUP BY m.id
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
        violations.append(Violation(
            1, f"user {row['username']} ({row['id']})",
            f"balance {row['balance']} but ledger sums to {row['ledger_sum']} (cap {max_balance})",
        ))
    for row in await connection.fetch(BALANCE_AFTER_MISMATCHES):
        violations.append(Violation(
            1, f"user {row['username']} ({row['id']})",
            f"balance {row['balance']} but the last ledger row left {row['balance_after']}",
        ))
    for row in await connection.fetch(STAKE_MISMATCHES):
        violations.append(Violation(2, f"bet {row['id']}", f"{row['stakes']} bet_stake rows (or wrong amount)"))
    for row in await connection.fetch(SETTLEMENT_MISMATCHES):
        violations.append(Violation(
            2, f"bet {row['id']}",
            f"status {row['status']} with {row['rows']} payout/refund rows paying {row['paid']} (payout {row['payout']})",
        ))
    for row in await connection.fetch(OPEN_BETS_ON_SETTLED_MARKETS):
        violations.append(Violation(3, f"market {row['id']}", f"settled but {row['open_bets']} bets still open"))
    return violations
