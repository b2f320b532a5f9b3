"""Storage rows as the wire shapes of docs/protocol.md (camelCase; Decimals stay exact)."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from game.clock import iso_z
from game.errors import NotACursor
from storage.activity import ActivityBet
from storage.bets import PlacedBet
from storage.leaderboards import Standing
from storage.odds_history import Candle
from storage.rows import Bet, LedgerEntry, Market, User


def user_view(row: User) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "username": row.username,
        "balance": row.balance,
        "createdAt": row.created_at,
        "anonymous": row.anonymous,
    }


def ledger_entry_view(row: LedgerEntry) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "kind": row.kind,
        "amount": row.amount,
        "balanceAfter": row.balance_after,
        "betId": str(row.bet_id) if row.bet_id is not None else None,
        "createdAt": row.created_at,
    }


def encode_cursor(*parts: object) -> str:
    """Opaque to clients: a base64 of the position, never parsed by them."""
    return (
        base64.urlsafe_b64encode("|".join(str(part) for part in parts).encode())
        .decode()
        .rstrip("=")
    )


_CURSOR_TEXT: Final = re.compile(r"[A-Za-z0-9_-]{1,200}")
_SEQ_TEXT: Final = re.compile(r"0|[1-9][0-9]{0,18}")
_BIGINT_MAX: Final = 2**63 - 1
_COUNT_TEXT: Final = re.compile(r"0|[1-9][0-9]{0,8}")


def not_our_cursor() -> NotACursor:
    return NotACursor()


def decode_cursor(cursor: str, count: int) -> list[str]:
    """The `count` parts of a cursor `encode_cursor` wrote, or VALIDATION_ERROR naming `cursor`.

    Only the exact text `encode_cursor` gives for those parts is taken: no other alphabet, no
    padding, no spare bits.
    """
    if not _CURSOR_TEXT.fullmatch(cursor):
        raise not_our_cursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
    except (ValueError, UnicodeDecodeError) as error:
        raise not_our_cursor() from error
    if len(parts) != count or encode_cursor(*parts) != cursor:
        raise not_our_cursor()
    return parts


def decode_seq_cursor(cursor: str) -> int:
    """A position in a bigint sequence (the ledger's `seq`), as `encode_cursor(seq)` wrote it."""
    (text,) = decode_cursor(cursor, 1)
    if not _SEQ_TEXT.fullmatch(text) or int(text) > _BIGINT_MAX:
        raise not_our_cursor()
    return int(text)


def decode_time_id_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """A (UTC time, id) position as `encode_cursor(time.isoformat(), id)` wrote it.

    The time must be in UTC, as the database gives it: a year-1 or year-9999 time at another
    offset falls outside the range of times and would fail in the query, not here.
    """
    time_text, id_text = decode_cursor(cursor, 2)
    try:
        at = datetime.fromisoformat(time_text)
        row_id = uuid.UUID(id_text)
    except ValueError:
        raise not_our_cursor() from None
    if at.utcoffset() != timedelta(0) or at.isoformat() != time_text or str(row_id) != id_text:
        raise not_our_cursor()
    return at, row_id


def decode_time_count_cursor(cursor: str) -> tuple[datetime, int]:
    """A (UTC time, count) position as `encode_cursor(time.isoformat(), count)` wrote it."""
    time_text, count_text = decode_cursor(cursor, 2)
    try:
        at = datetime.fromisoformat(time_text)
    except ValueError:
        raise not_our_cursor() from None
    if at.utcoffset() != timedelta(0) or at.isoformat() != time_text:
        raise not_our_cursor()
    if not _COUNT_TEXT.fullmatch(count_text):
        raise not_our_cursor()
    return at, int(count_text)


def market_view(row: Market) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "question": row.question,
        "thisLabel": row.this_label,
        "thatLabel": row.that_label,
        "thisOdds": row.this_odds,
        "thatOdds": row.that_odds,
        "oddsUpdatedAt": row.odds_updated_at,
        "status": row.status,
        "endsAt": row.ends_at,
        "resolvedSide": row.resolved_side,
        "category": row.category,
        "imageUrl": row.image_url,
        "source": row.source,
        "sourceId": row.source_id,
    }


def bet_view(row: Bet) -> dict[str, Any]:
    """A bet as docs/protocol.md's `Bet`; `payout` and `settledAt` are null while it is open."""
    return {
        "id": str(row.id),
        "clientBetId": row.client_bet_id,
        "marketId": str(row.market_id),
        "side": row.side,
        "amount": row.amount,
        "odds": row.odds,
        "potentialPayout": row.potential_payout,
        "status": row.status,
        "payout": row.payout,
        "placedAt": row.placed_at,
        "settledAt": row.settled_at,
    }


def placed_bet_view(placed: PlacedBet) -> dict[str, Any]:
    """What `bet:place` answers: the bet, and the balance it left with that balance's version."""
    return {
        "bet": bet_view(placed.bet),
        "balance": placed.balance,
        "balanceVersion": placed.balance_version,
    }


def entry_view(standing: Standing) -> dict[str, Any]:
    return {
        "rank": standing.rank,
        "userId": standing.user_id,
        "username": standing.username,
        "pnl": standing.pnl,
    }


def candle_view(candle: Candle) -> dict[str, Any]:
    return {
        "t": candle.t,
        "open": candle.open,
        "high": candle.high,
        "low": candle.low,
        "close": candle.close,
    }


# What a player who hides their name shows as in market activity.
ANONYMOUS: Final = "anonymous"


def activity_views(rows: Iterable[ActivityBet]) -> list[dict[str, Any]]:
    """Bets as anyone may see them: no id, no balance; the name only if its player shows it.

    A bet batch commits its bets with one time, so each distinct time is written once: as text
    the codec would write, at a fraction of the cost for a batch of hundreds.
    """
    times: dict[datetime, str] = {}
    views = []
    for row in rows:
        at = times.get(row.placed_at)
        if at is None:
            at = times[row.placed_at] = iso_z(row.placed_at)
        views.append(
            {
                "username": ANONYMOUS if row.username is None else row.username,
                "side": row.side,
                "amount": row.amount,
                "odds": row.odds,
                "at": at,
            }
        )
    return views
