"""Every payload the server accepts, declared once (msgspec), checked at the edge.

Unknown fields, wrong types and bad ranges fail here with VALIDATION_ERROR naming the field, so
handlers only ever see valid data. server/apidocs.py turns these into the API documents.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal, TypeVar

import msgspec

from game.errors import ValidationFailed
from game.money import MAX_ODDS, MIN_ODDS
from server.errors import validation_error

Username = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9_]{3,50}$", description="3-50 of [A-Za-z0-9_]")
]
Password = Annotated[
    str, msgspec.Meta(min_length=1, max_length=72, description="8-72 bytes of UTF-8")
]
Limit200 = Annotated[int, msgspec.Meta(ge=1, le=200)]
Limit100 = Annotated[int, msgspec.Meta(ge=1, le=100)]
Cursor = Annotated[str, msgspec.Meta(max_length=200)]
# Every string this pattern admits is a UUID, so a malformed id is VALIDATION_ERROR at the edge,
# the same in every event, and a handler may call uuid.UUID on it without a second check.
Id = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        description="a UUID",
    ),
]
ClientBetId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Period = Literal["all", "week", "day"]
# Sent as a JSON number or a decimal string ("12.50"); read exactly, never as a float.
DecimalInput = Annotated[
    Decimal, msgspec.Meta(extra_json_schema={"x-wire-type": ["number", "string"]})
]


class Payload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every payload: unknown fields are refused."""


# REST
class Credentials(Payload):
    username: Username
    password: Password

    def check_password_bytes(self) -> None:
        """The 8-72 byte rule is in bytes (bcrypt's limit), which a string schema cannot express."""
        if not 8 <= len(self.password.encode()) <= 72:
            raise ValidationFailed("password must be 8-72 bytes of UTF-8", "password")


class RefreshRequest(Payload):
    refreshToken: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


# Socket.IO events
class Empty(Payload):
    pass


class WalletHistory(Payload):
    limit: Limit200 = 50
    cursor: Cursor | None = None


class AuthRefresh(Payload):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class MarketsList(Payload):
    status: Literal["open", "closed", "resolved", "all"] = "open"
    limit: Limit200 = 50
    cursor: Cursor | None = None


class MarketGet(Payload):
    marketId: Id


class MarketIds(Payload):
    marketIds: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=100)]


class BetPlace(Payload):
    marketId: Id
    side: Literal["this", "that"]
    amount: DecimalInput
    clientBetId: ClientBetId
    expectedOdds: DecimalInput | None = None
    maxSlippage: DecimalInput = Decimal("0")

    def __post_init__(self) -> None:
        # msgspec has no range constraints for Decimal; the " - at `$.field`" suffix names the field.
        if self.expectedOdds is not None and not MIN_ODDS <= self.expectedOdds <= MAX_ODDS:
            raise ValueError(f"must be within [{MIN_ODDS}, {MAX_ODDS}] - at `$.expectedOdds`")
        if not Decimal(0) <= self.maxSlippage <= MAX_ODDS:
            raise ValueError(f"must be within [0, {MAX_ODDS}] - at `$.maxSlippage`")


class BetsList(Payload):
    status: Literal["open", "settled", "all"] = "all"
    limit: Limit200 = 50
    cursor: Cursor | None = None


class LeaderboardGet(Payload):
    period: Period = "all"
    limit: Limit100 = 20


class LeaderboardRoom(Payload):
    period: Period = "all"


P = TypeVar("P", bound=Payload)


def parse(schema: type[P], data: object) -> P:
    """Validate a decoded payload; `None` counts as `{}` for events that take no fields."""
    if data is None:
        data = {}
    try:
        # Not strict about str -> Decimal ("12.50" is a fine amount), strict about everything else.
        return msgspec.convert(data, schema, strict=schema is not BetPlace)
    except msgspec.ValidationError as error:
        raise validation_error(error) from error
