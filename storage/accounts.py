"""Users and their refresh tokens: signup with its bonus, lookups, token rotation and revocation."""

from __future__ import annotations

import enum
import hashlib
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

import asyncpg

from game.errors import UsernameTaken
from storage.database import Connection, Executor
from storage.rows import Login, RefreshToken, User

INSERT_USER_WITH_BONUS: Final = """
WITH new_user AS (
    INSERT INTO users (username, password_hash, balance, is_load_test)
    VALUES ($1, $2, $3, $4)
    RETURNING id, username, balance, created_at, anonymous
), bonus AS (
    INSERT INTO ledger (user_id, kind, amount, balance_after)
    SELECT id, 'signup_bonus', balance, balance FROM new_user
    WHERE balance > 0
)
SELECT id, username, balance, created_at, anonymous FROM new_user
"""

SELECT_USER_BY_ID: Final = """
SELECT id, username, balance, created_at, anonymous FROM users WHERE id = $1
"""

UPDATE_ANONYMOUS: Final = """
UPDATE users SET anonymous = $2 WHERE id = $1
RETURNING id, username, balance, created_at, anonymous
"""

SELECT_LOGIN: Final = """
SELECT id, username, balance, created_at, anonymous, password_hash
FROM users WHERE lower(username) = lower($1)
"""

INSERT_REFRESH_TOKEN: Final = """
INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
"""

SELECT_REFRESH_FOR_UPDATE: Final = """
SELECT id, user_id, family_id, created_at, expires_at, spent_at, revoked_at, replaced_by, spent_by
FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE
"""

# The successor a rotation handed out, if it is still unused: what a retry gets again.
SELECT_UNUSED_SUCCESSOR: Final = """
SELECT id, user_id, family_id, created_at
FROM refresh_tokens
WHERE id = $1 AND spent_at IS NULL AND revoked_at IS NULL AND expires_at > $2
"""

SPEND_REFRESH_TOKEN: Final = """
UPDATE refresh_tokens SET spent_at = $2, replaced_by = $3, spent_by = $4 WHERE id = $1
"""

REVOKE_FAMILY: Final = """
UPDATE refresh_tokens SET revoked_at = now()
WHERE family_id = $1 AND revoked_at IS NULL
"""

REVOKE_FAMILY_OF_TOKEN: Final = """
UPDATE refresh_tokens SET revoked_at = now()
WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)
  AND revoked_at IS NULL
"""


def token_hash(token: str) -> bytes:
    """Refresh tokens are stored by hash only: a copy of the table signs nobody in."""
    return hashlib.sha256(token.encode()).digest()


def client_hash(client: str) -> bytes:
    """Who rotated a token (its address and User-Agent) is stored by hash only, like the token."""
    return hashlib.sha256(b"refresh-client\n" + client.encode()).digest()


async def create_user(
    connection: Executor,
    username: str,
    password_hash: str,
    starting_credits: Decimal,
    *,
    is_load_test: bool = False,
) -> User:
    """The user and their `signup_bonus` ledger row, in one statement (so one transaction)."""
    try:
        row = await connection.fetchrow(
            INSERT_USER_WITH_BONUS, username, password_hash, starting_credits, is_load_test
        )
    except asyncpg.UniqueViolationError as error:
        raise UsernameTaken(username) from error
    assert row is not None
    return User.from_record(row)


async def get_user(connection: Executor, user_id: uuid.UUID) -> User | None:
    row = await connection.fetchrow(SELECT_USER_BY_ID, user_id)
    return None if row is None else User.from_record(row)


async def set_anonymous(connection: Executor, user_id: uuid.UUID, anonymous: bool) -> User | None:
    """Hide (or show again) the player's name in market activity; None if there is no such user."""
    row = await connection.fetchrow(UPDATE_ANONYMOUS, user_id, anonymous)
    return None if row is None else User.from_record(row)


async def get_login(connection: Executor, username: str) -> Login | None:
    row = await connection.fetchrow(SELECT_LOGIN, username)
    return None if row is None else Login.from_record(row)


async def store_refresh_token(
    connection: Executor,
    token: str,
    token_id: uuid.UUID,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    expires_at: datetime,
    issued_at: datetime,
) -> None:
    await connection.execute(
        INSERT_REFRESH_TOKEN, token_id, user_id, family_id, token_hash(token), expires_at, issued_at
    )


class RotationOutcome(enum.Enum):
    ROTATED = "rotated"
    REPLAYED = "replayed"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    REUSED = "reused"
    # Within the grace window, but from a client other than the one that rotated it.
    REUSED_IN_GRACE = "reused_in_grace"
    EXPIRED = "expired"


async def spend_refresh_token(
    connection: Connection,
    token: str,
    now: datetime,
    successor_id: uuid.UUID,
    grace: timedelta,
    client: str,
) -> tuple[RotationOutcome, RefreshToken | None]:
    """Spend a refresh token in favour of `successor_id`, or detect reuse. Call inside a transaction.

    ROTATED answers the spent token's row: the caller stores the successor in the same
    transaction, and the row records `client` (by hash) as the one that rotated it. A spent token
    presented again within `grace` of its rotation, while its successor is unused, by that same
    client, is a retry or a race of that client: REPLAYED answers the successor's row, from which
    the same pair is derived again. Otherwise two parties hold it (REUSED_IN_GRACE when another
    client came within the window): the whole family is revoked (and that revocation must commit
    even though the caller then refuses the request). The row lock makes racing presentations of
    one token take these branches one at a time.
    """
    row = await connection.fetchrow(SELECT_REFRESH_FOR_UPDATE, token_hash(token))
    if row is None:
        return RotationOutcome.UNKNOWN, None
    spent = RefreshToken.from_record(row)
    if row["revoked_at"] is not None:
        return RotationOutcome.REVOKED, spent
    if row["spent_at"] is not None:
        outcome = RotationOutcome.REUSED
        if row["replaced_by"] is not None and now - row["spent_at"] <= grace:
            successor = await connection.fetchrow(SELECT_UNUSED_SUCCESSOR, row["replaced_by"], now)
            if successor is not None and row["spent_by"] == client_hash(client):
                return RotationOutcome.REPLAYED, RefreshToken.from_record(successor)
            if successor is not None:
                outcome = RotationOutcome.REUSED_IN_GRACE
        await connection.execute(REVOKE_FAMILY, row["family_id"])
        return outcome, spent
    if row["expires_at"] <= now:
        return RotationOutcome.EXPIRED, spent
    await connection.execute(SPEND_REFRESH_TOKEN, row["id"], now, successor_id, client_hash(client))
    return RotationOutcome.ROTATED, spent


async def revoke_family_of(connection: Executor, token: str) -> None:
    await connection.execute(REVOKE_FAMILY_OF_TOKEN, token_hash(token))
