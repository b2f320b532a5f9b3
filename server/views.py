"""Database rows as the wire shapes of docs/protocol.md (camelCase; Decimals stay exact)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, TypeAlias

import asyncpg

from game.errors import NotACursor
from storage.leaderboards import Standing

# A database row or a plain mapping (cached rows are dicts).
Row: TypeAlias = Mapping[str, Any] | asyncpg.Record


def user_view(row: Row) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "username": row["username"],
        "balance": row["balance"],
        "createdAt": row["created_at"],
    }


def ledger_entry_view(row: Row) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "amount": row["amount"],
        "balanceAfter": row["balance_after"],
        "betId": str(row["bet_id"]) if row["bet_id"] is not None else None,
        "createdAt": row["created_at"],
    }


def encode_cursor(*parts: object) -> str:
    """Opaque to clients: a base64 of the position, never parsed by them."""
    return (
        base64.urlsafe_b64encode("|".join(str(part) for part in parts).encode())
        .decode()
        .rstrip("=")
    )


def decode_cursor(cursor: str, count: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
    except (ValueError, UnicodeDecodeError) as error:
        raise NotACursor() from error
    if len(parts) != count:
        raise NotACursor()
    return parts


def market_view(row: Row) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "question": row["question"],
        "thisLabel": row["this_label"],
        "thatLabel": row["that_label"],
        "thisOdds": row["this_odds"],
        "thatOdds": row["that_odds"],
        "oddsUpdatedAt": row["odds_updated_at"],
        "status": row["status"],
        "endsAt": row["ends_at"],
        "resolvedSide": row["resolved_side"],
        "category": row["category"],
        "imageUrl": row["image_url"],
        "source": row["source"],
        "sourceId": row["source_id"],
    }


def bet_view(row: Row) -> dict[str, Any]:
    """A bet as docs/protocol.md's `Bet`; `payout` and `settledAt` are null while it is open."""
    return {
        "id": str(row["id"]),
        "clientBetId": row["client_bet_id"],
        "marketId": str(row["market_id"]),
        "side": row["side"],
        "amount": row["amount"],
        "odds": row["odds"],
        "potentialPayout": row["potential_payout"],
        "status": row["status"],
        "payout": row["payout"],
        "placedAt": row["placed_at"],
        "settledAt": row["settled_at"],
    }


def entry_view(standing: Standing) -> dict[str, Any]:
    return {
        "rank": standing.rank,
        "userId": standing.user_id,
        "username": standing.username,
        "pnl": standing.pnl,
    }
