"""The one error type of the game, with the stable codes of PROTOCOL.md."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


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

    The same object becomes a REST body `{"error": ...}` and a socket ack
    `{"ok": false, "error": ...}`; `details` are merged into it as top-level keys.
    """

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code.value, "message": self.message, **self.details}

    def __repr__(self) -> str:
        return f"GameError({self.code.value}, {self.message!r}, {self.details!r})"
