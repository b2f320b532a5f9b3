"""Accounts: signing up, signing in, rotating a session's refresh token, signing out.

Passwords and tokens are the transport's tools (bcrypt off the loop, JWT signing keys): the
use case receives them as the two small interfaces below and decides when each is used. The
token refusals (invalid, expired, reused) are the transport's too, so a rotation answers its
outcome and the caller refuses by it; a player who no longer exists is a game refusal, raised here.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import asyncpg

from game.errors import (
    InvalidCredentials,
    RateLimited,
    RefreshTokenReused,
    TokenExpired,
    TokenInvalid,
    UserGone,
)
from game.rules import GameRules
from storage import accounts
from storage.accounts import RotationOutcome
from storage.ratelimit import LoginGuard
from storage.rows import User

logger = logging.getLogger("thisthat.accounts")


class Passwords(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password: str, hashed: str | None) -> bool:
        """False for a wrong password, and for `hashed` None at the cost of a wrong password."""


@dataclass(frozen=True, slots=True)
class MintedPair:
    """An access token and a refresh token, signed; the refresh token expires at `refresh_expires_at`."""

    access_token: str
    refresh_token: str
    refresh_expires_at: datetime


class TokenMint(Protocol):
    def issue_pair(
        self,
        user_id: uuid.UUID,
        username: str,
        family_id: uuid.UUID,
        refresh_id: uuid.UUID,
        issued_at: datetime,
    ) -> MintedPair:
        """The same arguments sign to the same pair: a retried rotation gets it again."""


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    tokens: MintedPair


@dataclass(frozen=True, slots=True)
class Rotation:
    """A refresh token spent: ROTATED for a new pair, REPLAYED for a retry within the grace."""

    outcome: RotationOutcome
    tokens: MintedPair


class Accounts:
    def __init__(
        self,
        pool: asyncpg.Pool,
        rules: GameRules,
        passwords: Passwords,
        tokens: TokenMint,
        login_guard: LoginGuard,
        refresh_grace: timedelta,
    ) -> None:
        self.pool = pool
        self.rules = rules
        self.passwords = passwords
        self.tokens = tokens
        self.login_guard = login_guard
        self.refresh_grace = refresh_grace

    async def signup(self, username: str, password: str, now: datetime) -> Session:
        """A new player with the starting credits, signed in; UsernameTaken refuses a taken name."""
        password_hash = await self.passwords.hash(password)
        user = await accounts.create_user(
            self.pool, username, password_hash, self.rules.starting_credits
        )
        return await self._open_session(user, now)

    async def login(self, username: str, password: str, address: str, now: datetime) -> Session:
        """A new session; InvalidCredentials alike for an unknown name and a wrong password.

        Only failures count against a username, and per address first: a stranger's guesses slow
        the stranger, never the owner signing in from their own address.
        """
        wait_ms = await self.login_guard.attempt(username, address)
        if wait_ms:
            raise RateLimited("too many attempts; slow down", wait_ms)
        try:
            found = await accounts.get_login(self.pool, username)
            # Unknown users are checked against a decoy hash: same cost, same answer as a wrong
            # password.
            right = await self.passwords.verify(password, found.password_hash if found else None)
        except Exception:
            # Unanswered (NOT_READY while the database is down): no guess was judged, so none is
            # counted, or an outage would lock players out once it is over.
            await self._not_judged(username, address)
            raise
        if not right:
            raise InvalidCredentials()
        assert found is not None
        await self.login_guard.succeeded(username, address)
        return await self._open_session(found.user, now)

    async def _not_judged(self, username: str, address: str) -> None:
        try:
            await self.login_guard.not_judged(username, address)
        except Exception:  # noqa: BLE001 - the caller's own failure is the one to report
            logger.warning("login attempt not given back", exc_info=True)

    async def _open_session(self, user: User, now: datetime) -> Session:
        """An access token and the first refresh token of a new family."""
        family_id = uuid.uuid4()
        refresh_id = uuid.uuid4()
        tokens = self.tokens.issue_pair(user.id, user.username, family_id, refresh_id, now)
        await accounts.store_refresh_token(
            self.pool,
            tokens.refresh_token,
            refresh_id,
            user.id,
            family_id,
            tokens.refresh_expires_at,
            now,
        )
        return Session(user, tokens)

    async def refresh(self, refresh_token: str, now: datetime, client: str) -> Rotation:
        """Spend a verified refresh token for a new pair, or refuse it.

        `client` says who asks (its address and User-Agent). ROTATED stores the successor in the
        spending transaction; REPLAYED (a retry within the grace, by the client that rotated it)
        signs the successor's pair again, and is logged. A reused token has revoked its family,
        and that revocation commits before RefreshTokenReused is raised; TokenExpired and
        TokenInvalid for an expired or an unknown or revoked one; UserGone when the token
        outlived its player.
        """
        successor_id = uuid.uuid4()
        tokens = None
        user = None
        async with self.pool.acquire() as connection, connection.transaction():
            outcome, row = await accounts.spend_refresh_token(
                connection, refresh_token, now, successor_id, self.refresh_grace, client
            )
            answered = outcome in (RotationOutcome.ROTATED, RotationOutcome.REPLAYED)
            if answered:
                assert row is not None
                user = await accounts.get_user(connection, row.user_id)
            if answered and user is not None:
                assert row is not None
                if outcome is RotationOutcome.ROTATED:
                    tokens = self.tokens.issue_pair(
                        user.id, user.username, row.family_id, successor_id, now
                    )
                    await accounts.store_refresh_token(
                        connection,
                        tokens.refresh_token,
                        successor_id,
                        user.id,
                        row.family_id,
                        tokens.refresh_expires_at,
                        now,
                    )
                else:
                    # A retry: the pair answered before, signed again from the same claims.
                    tokens = self.tokens.issue_pair(
                        user.id, user.username, row.family_id, row.id, row.created_at
                    )
        if answered and user is None:
            raise UserGone()
        if outcome in (RotationOutcome.REUSED, RotationOutcome.REUSED_IN_GRACE):
            logger.warning(
                "refresh token reused; family revoked",
                extra={
                    "tokenId": str(row.id) if row else None,
                    "familyId": str(row.family_id) if row else None,
                    # Within the grace window, from a client other than the one that rotated it.
                    "otherClientInGrace": outcome is RotationOutcome.REUSED_IN_GRACE,
                },
            )
            raise RefreshTokenReused()
        if outcome is RotationOutcome.REPLAYED and row is not None:
            # The same client retrying (its address and agent match the rotation's): logged, as
            # every reuse is, but not a warning; another client's reuse revoked the family above.
            logger.info(
                "spent refresh token presented again within the grace window; same pair answered",
                extra={"successorId": str(row.id), "familyId": str(row.family_id)},
            )
        if outcome is RotationOutcome.EXPIRED:
            raise TokenExpired("refresh token expired")
        if tokens is None:
            raise TokenInvalid("refresh token is not valid")
        return Rotation(outcome, tokens)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the token's whole family: every device holding one of its tokens is signed out."""
        await accounts.revoke_family_of(self.pool, refresh_token)

    async def user(self, user_id: uuid.UUID) -> User:
        """The player's account, or UserGone when it no longer exists."""
        user = await accounts.get_user(self.pool, user_id)
        if user is None:
            raise UserGone()
        return user

    async def set_anonymous(self, user_id: uuid.UUID, anonymous: bool) -> User:
        """Hide the player's name in market activity, or show it again: pages and pushes from
        now on, past bets included. UserGone when the account no longer exists."""
        user = await accounts.set_anonymous(self.pool, user_id, anonymous)
        if user is None:
            raise UserGone()
        return user
