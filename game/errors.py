"""The refusal catalogue: every refusal declared once, with its code, HTTP status, fields and message.

Call sites raise `MarketClosed("market is closed")`, never assemble a code and its wording by
hand, so the same condition gets the same code and words on sockets and over REST. The codes are
those of docs/protocol.md, the transport's own (tokens, origins, routes, a node not ready) among them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

from game.clock import iso_z


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    AUTH_REQUIRED = "AUTH_REQUIRED"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    USERNAME_TAKEN = "USERNAME_TAKEN"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    FORBIDDEN_ORIGIN = "FORBIDDEN_ORIGIN"
    NOT_FOUND = "NOT_FOUND"
    RATE_LIMITED = "RATE_LIMITED"
    MARKET_NOT_FOUND = "MARKET_NOT_FOUND"
    MARKET_CLOSED = "MARKET_CLOSED"
    ODDS_STALE = "ODDS_STALE"
    ODDS_CHANGED = "ODDS_CHANGED"
    BET_AMOUNT_OUT_OF_RANGE = "BET_AMOUNT_OUT_OF_RANGE"
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
    BALANCE_CAP_EXCEEDED = "BALANCE_CAP_EXCEEDED"
    REWARD_ALREADY_CLAIMED = "REWARD_ALREADY_CLAIMED"
    NOT_READY = "NOT_READY"
    UNKNOWN_EVENT = "UNKNOWN_EVENT"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class GameError(Exception):
    """A refusal with a stable machine code, a human message and optional detail fields.

    Each subclass declares its `code` and `http_status` once. The same object becomes a REST
    body `{"error": ...}` and a socket ack `{"ok": false, "error": ...}` (server/wire/refusals.py);
    `details` are merged into it as top-level keys.
    """

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code.value, "message": self.message, **self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value}, {self.message!r}, {self.details!r})"


class ValidationFailed(GameError):
    """A payload with a wrong type, a missing or unknown field, or a bad range."""

    code = ErrorCode.VALIDATION_ERROR
    http_status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        if field is None:
            super().__init__(message)
        else:
            super().__init__(message, details={"field": field})


class NotACursor(ValidationFailed):
    def __init__(self) -> None:
        super().__init__("cursor: not a cursor from this server", "cursor")


class UserGone(GameError):
    """A valid token for a user that no longer exists: the client must sign in again."""

    code = ErrorCode.AUTH_REQUIRED
    http_status = 401

    def __init__(self) -> None:
        super().__init__("user no longer exists")


class InvalidCredentials(GameError):
    code = ErrorCode.INVALID_CREDENTIALS
    http_status = 401

    def __init__(self) -> None:
        # The same words for an unknown user and a wrong password.
        super().__init__("unknown username or wrong password")


class UsernameTaken(GameError):
    code = ErrorCode.USERNAME_TAKEN
    http_status = 409

    def __init__(self, username: str) -> None:
        super().__init__(f"username {username!r} is taken")


class RateLimited(GameError):
    """Over a limit, or the server too busy: the client retries after `retryAfterMs`."""

    code = ErrorCode.RATE_LIMITED
    http_status = 429

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message, retryAfterMs=retry_after_ms)


class ServerBusy(RateLimited):
    def __init__(self, retry_after_ms: int) -> None:
        super().__init__("the server is busy; retry shortly", retry_after_ms)


class MarketNotFound(GameError):
    code = ErrorCode.MARKET_NOT_FOUND
    http_status = 404

    def __init__(self, market_id: object = None) -> None:
        super().__init__("no such market" if market_id is None else f"no market {market_id}")


class MarketClosed(GameError):
    code = ErrorCode.MARKET_CLOSED
    http_status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}; bets are closed")


class OddsStale(GameError):
    code = ErrorCode.ODDS_STALE
    http_status = 400

    def __init__(self, age_s: object | None, limit_s: float) -> None:
        if age_s is None:
            super().__init__("no odds have been read for this market yet")
        else:
            super().__init__(f"odds are {age_s}s old (limit {limit_s:.0f}s)")


class OddsChanged(GameError):
    code = ErrorCode.ODDS_CHANGED
    http_status = 400

    def __init__(self, current: Decimal, worst_accepted: object) -> None:
        super().__init__(
            f"odds moved to {current} (expected at most {worst_accepted})", currentOdds=current
        )


class BetAmountOutOfRange(GameError):
    code = ErrorCode.BET_AMOUNT_OUT_OF_RANGE
    http_status = 400

    def __init__(self, minimum: Decimal, maximum: Decimal) -> None:
        super().__init__(
            f"amount must be between {minimum:.2f} and {maximum:.2f} with at most 2 decimals",
            min=minimum,
            max=maximum,
        )


class InsufficientCredits(GameError):
    code = ErrorCode.INSUFFICIENT_CREDITS
    http_status = 400

    def __init__(self, balance: Decimal, stake: Decimal) -> None:
        super().__init__(f"balance {balance:.2f} is below {stake:.2f}", balance=balance)


class BalanceCapExceeded(GameError):
    """No balance may ever exceed the cap: a bet counts its win and every open bet's."""

    code = ErrorCode.BALANCE_CAP_EXCEEDED
    http_status = 400

    @classmethod
    def for_bet(cls, worst_case: Decimal, cap: Decimal) -> BalanceCapExceeded:
        return cls(
            f"if every open bet won, the balance would reach {worst_case:.2f}, "
            f"above the cap of {cap:.2f}"
        )

    @classmethod
    def for_reward(cls, reward: Decimal, cap: Decimal) -> BalanceCapExceeded:
        return cls(f"a reward of {reward:.2f} would take the balance above the cap of {cap:.2f}")


class RewardAlreadyClaimed(GameError):
    code = ErrorCode.REWARD_ALREADY_CLAIMED
    http_status = 409

    def __init__(self, next_claim_at: datetime) -> None:
        super().__init__(
            "daily reward already claimed today (UTC)", nextClaimAt=iso_z(next_claim_at)
        )


# Refusals of the way in: tokens, origins, routes and events, and the node's own state.


class AuthRequired(GameError):
    code = ErrorCode.AUTH_REQUIRED
    http_status = 401


class TokenInvalid(GameError):
    code = ErrorCode.TOKEN_INVALID
    http_status = 401


class TokenExpired(GameError):
    code = ErrorCode.TOKEN_EXPIRED
    http_status = 401


class RefreshTokenReused(GameError):
    code = ErrorCode.REFRESH_TOKEN_REUSED
    http_status = 401

    def __init__(self) -> None:
        super().__init__("refresh token was already used; sign in again")


class ForbiddenOrigin(GameError):
    code = ErrorCode.FORBIDDEN_ORIGIN
    http_status = 403

    def __init__(self, origin: str) -> None:
        super().__init__(f"origin {origin} is not allowed")


class RouteNotFound(GameError):
    code = ErrorCode.NOT_FOUND
    http_status = 404


class UnknownEvent(GameError):
    code = ErrorCode.UNKNOWN_EVENT
    http_status = 400

    def __init__(self, event: str, reason: str | None = None) -> None:
        super().__init__(reason or f"unknown event {event[:100]!r}")


class NotReady(GameError):
    code = ErrorCode.NOT_READY
    http_status = 503

    def __init__(self, message: str = "a dependency is unavailable; retry shortly") -> None:
        super().__init__(message)


class InternalError(GameError):
    code = ErrorCode.INTERNAL_ERROR
    http_status = 500

    def __init__(self) -> None:
        super().__init__("internal error; it has been logged")
