"""The rows storage hands upward: users, wallets, ledger entries, markets and bets as typed values.

Column names stay here. Each type is built from its driver record by one `from_record`, at the
storage edge, so the application layer, the caches and the views read attributes and never
learn what a column is called. A query may return more columns than its type keeps (`SELECT *`,
the listing upsert's `inserted` flag); only the named ones are read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Self

import asyncpg
import msgspec


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    username: str
    balance: Decimal
    created_at: datetime
    # The player hides their name from market activity (shown there as "anonymous").
    anonymous: bool

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(
            record["id"],
            record["username"],
            record["balance"],
            record["created_at"],
            record["anonymous"],
        )


@dataclass(frozen=True, slots=True)
class Login:
    """A user found by name, with the hash their password is checked against."""

    user: User
    password_hash: str

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(User.from_record(record), record["password_hash"])


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """A refresh token as a rotation reads it: whose it is, its family, its id and issue time
    (from which the pair it answered is derived again)."""

    id: uuid.UUID
    user_id: uuid.UUID
    family_id: uuid.UUID
    created_at: datetime

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(record["id"], record["user_id"], record["family_id"], record["created_at"])


@dataclass(frozen=True, slots=True)
class WalletState:
    """A balance and what the open bets hold: their stakes, and what they would pay if all won."""

    balance: Decimal
    open_stake: Decimal
    open_potential_payout: Decimal
    balance_version: int  # the seq of the ledger row that left the balance: higher is newer

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(
            record["balance"],
            record["open_stake"],
            record["open_potential_payout"],
            record["balance_version"],
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: uuid.UUID
    seq: int
    kind: str
    amount: Decimal
    balance_after: Decimal
    bet_id: uuid.UUID | None
    created_at: datetime

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(
            record["id"],
            record["seq"],
            record["kind"],
            record["amount"],
            record["balance_after"],
            record["bet_id"],
            record["created_at"],
        )


@dataclass(frozen=True, slots=True)
class Market:
    id: uuid.UUID
    source: str
    source_id: str
    slug: str | None
    question: str
    this_label: str
    that_label: str
    this_token_id: str
    that_token_id: str
    this_odds: Decimal
    that_odds: Decimal
    odds_updated_at: datetime
    status: str
    accepting_orders: bool
    ends_at: datetime | None
    resolved_side: str | None
    category: str | None
    image_url: str | None
    volume: Decimal
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    settled_at: datetime | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(
            record["id"],
            record["source"],
            record["source_id"],
            record["slug"],
            record["question"],
            record["this_label"],
            record["that_label"],
            record["this_token_id"],
            record["that_token_id"],
            record["this_odds"],
            record["that_odds"],
            record["odds_updated_at"],
            record["status"],
            record["accepting_orders"],
            record["ends_at"],
            record["resolved_side"],
            record["category"],
            record["image_url"],
            record["volume"],
            record["created_at"],
            record["updated_at"],
            record["resolved_at"],
            record["settled_at"],
        )


class Bet(msgspec.Struct, frozen=True):
    """A bet; `payout` and `settled_at` are None while it is open.

    A frozen msgspec Struct rather than a dataclass like its neighbours: one is built for every
    bet placed, and a frozen dataclass's field-by-field `__init__` cost ten times as much.
    """

    id: uuid.UUID
    user_id: uuid.UUID
    market_id: uuid.UUID
    client_bet_id: str
    side: str
    amount: Decimal
    odds: Decimal
    potential_payout: Decimal
    status: str
    payout: Decimal | None
    placed_at: datetime
    settled_at: datetime | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(
            record["id"],
            record["user_id"],
            record["market_id"],
            record["client_bet_id"],
            record["side"],
            record["amount"],
            record["odds"],
            record["potential_payout"],
            record["status"],
            record["payout"],
            record["placed_at"],
            record["settled_at"],
        )
