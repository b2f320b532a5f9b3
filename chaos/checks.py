"""The checks at the end of a chaos run: the players' journal and the upstream's resolutions
against what PostgreSQL holds. Each finding names its check; zero findings is the only pass."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

import asyncpg

from chaos.players import SELF_RECONNECT_WAIT_S, TRANSIENT, Journal

ACKED_MISSING: Final = "acked bet not stored"
ACKED_DIFFERENT: Final = "acked bet stored with other terms"
ACKED_TWICE: Final = "one clientBetId acked as two bets"
REFUSED_STORED: Final = "refused bet stored"
TRANSIENT_STORED: Final = "bet stored though every answer was a retry-later code"
REPEAT_REFUSED: Final = "repeat of an acked bet refused"
UNSENT_STORED: Final = "stored bet no player sent"
BALANCE_VS_LEDGER: Final = "balance differs from the ledger sum"
BALANCE_VS_BETS: Final = "balance differs from credits, rewards, stakes and payouts"
SIGNUP_CREDITS: Final = "signup credits not exactly once"
LEDGER_VS_TABLES: Final = "ledger totals differ from bets and rewards"
RESOLUTION_WRONG: Final = "market settled against its upstream resolution"
RESOLUTION_UNSETTLED: Final = "resolved upstream but not settled"
VERSION_WRONG: Final = "balance version names another balance"
LOGIN_REFUSED: Final = "login with the right password refused"
STRANDED: Final = "client did not reconnect by itself"

CHECKS: Final = (
    ACKED_MISSING,
    ACKED_DIFFERENT,
    ACKED_TWICE,
    REFUSED_STORED,
    TRANSIENT_STORED,
    REPEAT_REFUSED,
    UNSENT_STORED,
    BALANCE_VS_LEDGER,
    BALANCE_VS_BETS,
    SIGNUP_CREDITS,
    LEDGER_VS_TABLES,
    RESOLUTION_WRONG,
    RESOLUTION_UNSETTLED,
    VERSION_WRONG,
    LOGIN_REFUSED,
    STRANDED,
)

# Per user: the balance, what the ledger adds up to, and the same money recomputed from the
# bets and rewards tables (signup credits + rewards - stakes + payouts and refunds).
USER_MONEY: Final = """
SELECT u.id, u.username, u.balance,
       (SELECT coalesce(sum(amount), 0) FROM ledger l WHERE l.user_id = u.id) AS ledger_sum,
       (SELECT count(*) FROM ledger l WHERE l.user_id = u.id AND kind = 'signup_bonus') AS signups,
       (SELECT coalesce(sum(amount), 0) FROM ledger l
         WHERE l.user_id = u.id AND kind = 'signup_bonus') AS signup_sum,
       (SELECT coalesce(sum(amount), 0) FROM daily_rewards r WHERE r.user_id = u.id) AS rewards,
       (SELECT coalesce(sum(amount), 0) FROM bets b WHERE b.user_id = u.id) AS stakes,
       (SELECT coalesce(sum(payout), 0) FROM bets b WHERE b.user_id = u.id) AS payouts
FROM users u
"""

LEDGER_TOTALS: Final = """
SELECT kind, coalesce(sum(amount), 0) AS total, count(*) AS rows FROM ledger GROUP BY kind
"""

TABLE_TOTALS: Final = """
SELECT (SELECT coalesce(sum(amount), 0) FROM bets) AS stakes,
       (SELECT coalesce(sum(payout), 0) FROM bets WHERE status IN ('won', 'split')) AS payouts,
       (SELECT coalesce(sum(payout), 0) FROM bets WHERE status = 'refunded') AS refunds,
       (SELECT coalesce(sum(amount), 0) FROM daily_rewards) AS rewards,
       (SELECT coalesce(sum(balance), 0) FROM users) AS balances
"""

MARKETS_BY_SOURCE: Final = """
SELECT m.source_id, m.status, m.resolved_side, m.settled_at,
       (SELECT count(*) FROM bets b WHERE b.market_id = m.id) AS bets,
       (SELECT count(*) FROM bets b WHERE b.market_id = m.id AND b.status = 'open') AS open_bets
FROM markets m WHERE m.source_id = any($1::text[])
"""

# What the upstream resolution must become: (market status, resolved side).
EXPECTED_MARKET: Final = {
    "this": ("resolved", "this"),
    "that": ("resolved", "that"),
    "split": ("resolved", "split"),
    "cancelled": ("cancelled", None),
}


@dataclass
class Findings:
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)

    def add(self, check: str, example: str) -> None:
        self.counts[check] += 1
        shown = self.examples.setdefault(check, [])
        if len(shown) < 5:
            shown.append(example)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def unsettled_resolutions(connection: asyncpg.Connection, resolved: dict[str, str]) -> int:
    """How many markets the upstream resolved are not yet settled here."""
    rows = await connection.fetch(MARKETS_BY_SOURCE, list(resolved))
    settled = {row["source_id"] for row in rows if row["settled_at"] is not None}
    return len(resolved.keys() - settled)


async def check_bets(connection: asyncpg.Connection, journal: Journal, findings: Findings) -> None:
    rows = await connection.fetch(
        "SELECT id, user_id, client_bet_id, market_id, side, amount FROM bets"
    )
    stored: dict[tuple[str, str], list[asyncpg.Record]] = {}
    for row in rows:
        stored.setdefault((str(row["user_id"]), row["client_bet_id"]), []).append(row)
    unknown_stored = unknown_absent = 0
    for key, intent in journal.intents.items():
        found = stored.get(key, [])
        subject = f"{journal.users.get(intent.user_id, intent.user_id)}/{intent.client_bet_id}"
        if len(found) > 1:
            findings.add(ACKED_TWICE, f"{subject}: {len(found)} rows")
        fate = intent.fate
        if fate == "acked":
            ids = {str(ack["id"]) for ack in intent.acks}
            if len(ids) > 1:
                findings.add(ACKED_TWICE, f"{subject}: acked as {sorted(ids)}")
            for attempt in intent.attempts:
                if attempt.outcome == "refused" and attempt.code not in TRANSIENT:
                    # The protocol answers a repeated clientBetId with the original bet.
                    findings.add(REPEAT_REFUSED, f"{subject}: acked, then refused {attempt.code}")
            if not found:
                findings.add(ACKED_MISSING, f"{subject}: acked as {sorted(ids)}, no row")
                continue
            row = found[0]
            if (
                str(row["id"]) not in ids
                or str(row["market_id"]) != intent.market_id
                or row["side"] != intent.side
                or row["amount"] != intent.amount
                or any(Decimal(str(ack["amount"])) != row["amount"] for ack in intent.acks)
            ):
                findings.add(
                    ACKED_DIFFERENT,
                    f"{subject}: sent {intent.side} {intent.amount} on {intent.market_id}, "
                    f"acked {sorted(ids)}, stored {row['id']} {row['side']} {row['amount']} "
                    f"on {row['market_id']}",
                )
        elif fate == "refused":
            if found:
                codes = ",".join(a.code or "?" for a in intent.attempts)
                findings.add(
                    REFUSED_STORED, f"{subject}: answered {codes}, stored {found[0]['id']}"
                )
        elif found:
            unknown_stored += 1
        else:
            unknown_absent += 1
    for key, found in stored.items():
        if key not in journal.intents:
            findings.add(UNSENT_STORED, f"{key[1]} of user {key[0]}: {found[0]['id']}")
    findings.facts["unanswered bets found stored"] = str(unknown_stored)
    findings.facts["unanswered bets not stored"] = str(unknown_absent)


async def check_money(
    connection: asyncpg.Connection, starting_credits: Decimal, findings: Findings
) -> None:
    for row in await connection.fetch(USER_MONEY):
        who = f"user {row['username']}"
        if row["balance"] != row["ledger_sum"]:
            findings.add(
                BALANCE_VS_LEDGER, f"{who}: balance {row['balance']}, ledger {row['ledger_sum']}"
            )
        if row["signups"] != 1 or row["signup_sum"] != starting_credits:
            findings.add(
                SIGNUP_CREDITS, f"{who}: {row['signups']} signup rows paying {row['signup_sum']}"
            )
        recomputed = starting_credits + row["rewards"] - row["stakes"] + row["payouts"]
        if row["balance"] != recomputed:
            findings.add(
                BALANCE_VS_BETS,
                f"{who}: balance {row['balance']}, but {starting_credits} + rewards "
                f"{row['rewards']} - stakes {row['stakes']} + payouts {row['payouts']} = {recomputed}",
            )
    ledger = {row["kind"]: row["total"] for row in await connection.fetch(LEDGER_TOTALS)}
    tables = await connection.fetchrow(TABLE_TOTALS)
    assert tables is not None
    pairs = {
        "stakes": (-ledger.get("bet_stake", Decimal(0)), tables["stakes"]),
        "payouts": (ledger.get("bet_payout", Decimal(0)), tables["payouts"]),
        "refunds": (ledger.get("bet_refund", Decimal(0)), tables["refunds"]),
        "rewards": (ledger.get("daily_reward", Decimal(0)), tables["rewards"]),
        "balances": (sum(ledger.values(), Decimal(0)), tables["balances"]),
    }
    for name, (from_ledger, from_tables) in pairs.items():
        if from_ledger != from_tables:
            findings.add(LEDGER_VS_TABLES, f"{name}: ledger {from_ledger}, tables {from_tables}")
    findings.facts["money"] = (
        f"credits {ledger.get('signup_bonus', 0)} + rewards {pairs['rewards'][0]} "
        f"- stakes {pairs['stakes'][0]} + payouts {pairs['payouts'][0]} "
        f"+ refunds {pairs['refunds'][0]} = balances {tables['balances']}"
    )


async def check_resolutions(
    connection: asyncpg.Connection, resolved: dict[str, str], findings: Findings
) -> None:
    rows = {
        row["source_id"]: row for row in await connection.fetch(MARKETS_BY_SOURCE, list(resolved))
    }
    bets_settled = 0
    for source_id, kind in resolved.items():
        row = rows.get(source_id)
        if row is None:
            continue  # resolved before the feed ever listed it: nothing to settle here
        if row["settled_at"] is None or row["open_bets"]:
            findings.add(
                RESOLUTION_UNSETTLED,
                f"market {source_id[:12]}… ({kind}): status {row['status']}, "
                f"{row['open_bets']} open bets",
            )
            continue
        if (row["status"], row["resolved_side"]) != EXPECTED_MARKET[kind]:
            findings.add(
                RESOLUTION_WRONG,
                f"market {source_id[:12]}…: upstream {kind}, here {row['status']}/{row['resolved_side']}",
            )
        bets_settled += row["bets"]
    findings.facts["bets settled by resolutions"] = str(bets_settled)


async def check_balance_versions(
    connection: asyncpg.Connection, journal: Journal, findings: Findings
) -> None:
    """Every balance a player was told names, as its version, the ledger row that left it: that
    user's row, with that balance. So a client that keeps the highest version keeps the newest."""
    rows = await connection.fetch(
        "SELECT seq, user_id::text, balance_after FROM ledger WHERE seq = ANY($1::bigint[])",
        sorted({version for _, _, version in journal.balances}),
    )
    ledger = {row["seq"]: (row["user_id"], row["balance_after"]) for row in rows}
    for user_id, balance, version in journal.balances:
        if ledger.get(version) != (user_id, balance):
            findings.add(
                VERSION_WRONG,
                f"user {user_id} told {balance} at version {version}; ledger: {ledger.get(version)}",
            )
    findings.facts["versioned balances checked"] = str(len(journal.balances))
    if journal.stranded:
        findings.add(
            STRANDED,
            f"{journal.stranded} drops not recovered by python-socketio's own reconnection"
            f" within {SELF_RECONNECT_WAIT_S:.0f} s ({journal.self_reconnects} were)",
        )
    for status, count in journal.logins.items():
        if status not in (200, 503):
            findings.add(
                LOGIN_REFUSED,
                f"{count} answered {status} (a NOT_READY login must not count as a failure)",
            )


async def run_checks(
    database_url: str, journal: Journal, resolved: dict[str, str], starting_credits: Decimal
) -> Findings:
    findings = Findings()
    connection = await asyncpg.connect(database_url)
    try:
        await check_bets(connection, journal, findings)
        await check_money(connection, starting_credits, findings)
        await check_resolutions(connection, resolved, findings)
        await check_balance_versions(connection, journal, findings)
    finally:
        await connection.close()
    return findings
