"""Every payload the server accepts, declared once (msgspec), checked at the edge.

Unknown fields, wrong types and bad ranges fail here with VALIDATION_ERROR naming the field, so
handlers only ever see valid data. server/http/apidocs.py turns these into the API documents.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

from game.errors import ValidationFailed
from game.money import MAX_ODDS, MIN_ODDS
from server.wire.refusals import validation_error

Username = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9_]{3,50}$", description="3-50 of [A-Za-z0-9_]")
]
Password = Annotated[
    str, msgspec.Meta(min_length=1, max_length=72, description="8-72 bytes of UTF-8")
]
Limit200 = Annotated[int, msgspec.Meta(ge=1, le=200)]
Limit100 = Annotated[int, msgspec.Meta(ge=1, le=100)]
Cursor = Annotated[str, msgspec.Meta(max_length=200)]
# A real UUID: 32 hex digits, hyphenated in the canonical places or not at all. Handlers see the
# parsed value, so every id names one market however the client spelled it.
Id = Annotated[uuid.UUID, msgspec.Meta(description="a UUID")]
ClientBetId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Period = Literal["all", "week", "day"]

# Bounds on every decimal the server reads: well inside what PostgreSQL's numeric and Python's
# decimal context handle, far outside any amount or odds the game allows.
DECIMAL_PLACES: Final = 18
DECIMAL_LIMIT: Final = Decimal(10) ** 18
_DECIMAL_TEXT: Final = re.compile(r"-?[0-9]{1,40}(?:\.[0-9]{1,40})?(?:[eE][+-]?[0-9]{1,3})?")


class WireDecimal(Decimal):
    """A decimal from the wire: a JSON number or a plain decimal string ("12.50"), read exactly.

    Python's Decimal() also reads "NaN", "sNaN", "Infinity", "1_000", " 12 ", non-ASCII digits and
    exponents no database column can hold; `read_decimal` refuses all of those.
    """


DecimalInput = Annotated[
    WireDecimal, msgspec.Meta(extra_json_schema={"x-wire-type": ["number", "string"]})
]


def read_decimal(value: object) -> WireDecimal:
    """A finite decimal with at most DECIMAL_PLACES places and a magnitude below DECIMAL_LIMIT."""
    if type(value) is int:
        # The common stake (`"amount": 10`): a whole number has no places to check.
        if abs(value) >= DECIMAL_LIMIT:
            raise ValueError(f"must be below {DECIMAL_LIMIT:.0E} in magnitude")
        return WireDecimal(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError("must be a JSON number or a decimal string")
    text = value if isinstance(value, str) else str(value)
    if not _DECIMAL_TEXT.fullmatch(text):
        raise ValueError("must be a decimal number such as 12.50")
    number = WireDecimal(text)
    if number.as_tuple().exponent < -DECIMAL_PLACES:  # type: ignore[operator]  # finite: an int
        raise ValueError(f"must have at most {DECIMAL_PLACES} decimal places")
    if abs(number) >= DECIMAL_LIMIT:
        raise ValueError(f"must be below {DECIMAL_LIMIT:.0E} in magnitude")
    return number


def _read_custom(kind: type, value: Any) -> Any:
    """msgspec's hook for types it does not know: only WireDecimal is declared."""
    if kind is WireDecimal:
        return read_decimal(value)
    raise NotImplementedError(kind)


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

    def check_password_fits(self) -> None:
        """A login password longer than bcrypt's 72 bytes is refused as one longer than 72
        characters is; no stored password can be that long."""
        if len(self.password.encode()) > 72:
            raise ValidationFailed("password: at most 72 bytes of UTF-8", "password")


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
    # A factory, as msgspec cannot write a WireDecimal default into the schema; the schema's
    # default says it instead.
    maxSlippage: Annotated[
        WireDecimal,
        msgspec.Meta(extra_json_schema={"x-wire-type": ["number", "string"], "default": "0"}),
    ] = msgspec.field(default_factory=lambda: WireDecimal(0))

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
    offset: (
        Annotated[
            int,
            msgspec.Meta(
                ge=0, le=10_000_000, description="ranks to skip: the page starts at offset + 1"
            ),
        ]
        | None
    ) = None
    around: (
        Annotated[
            Literal["me"],
            msgspec.Meta(
                description="the page centred on the caller's rank, (limit - 1) / 2 above it; "
                "not with offset"
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        if self.around is not None and self.offset is not None:
            raise ValueError("give either around or offset, not both - at `$.offset`")


class LeaderboardRoom(Payload):
    period: Period = "all"


# Chart times: aware ISO-8601 (RFC 3339), within years the game can have odds for.
EARLIEST_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME: Final = datetime(3000, 1, 1, tzinfo=UTC)
ChartTime = Annotated[
    datetime, msgspec.Meta(tz=True, description="RFC 3339 with a zone, years 2000-2999")
]


class MarketHistory(Payload):
    marketId: Id
    interval: (
        Annotated[
            Literal["1m", "1h", "1d"],
            msgspec.Meta(
                description="candle size; by default chosen from the span: up to a day 1m, "
                "up to 30 days 1h, longer 1d"
            ),
        ]
        | None
    ) = None
    start: (
        Annotated[
            ChartTime, msgspec.Meta(description="from this time (default: the market's start)")
        ]
        | None
    ) = msgspec.field(default=None, name="from")
    end: (
        Annotated[ChartTime, msgspec.Meta(description="until this time, excluded (default: now)")]
        | None
    ) = msgspec.field(default=None, name="to")

    def __post_init__(self) -> None:
        for name, at in (("from", self.start), ("to", self.end)):
            if at is not None and not EARLIEST_TIME <= at < LATEST_TIME:
                raise ValueError(f"must be within the years 2000-2999 - at `$.{name}`")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("must be before `to` - at `$.from`")


class MarketActivity(Payload):
    marketId: Id
    limit: Limit100 = 20
    cursor: Cursor | None = None


class AccountUpdate(Payload):
    anonymous: Annotated[
        bool, msgspec.Meta(description='hide the name in market activity (shown as "anonymous")')
    ]


P = TypeVar("P", bound=Payload)


def parse(schema: type[P], data: object) -> P:
    """Validate a decoded payload; `None` counts as `{}` for events that take no fields."""
    if data is None:
        data = {}
    try:
        return msgspec.convert(data, schema, strict=True, dec_hook=_read_custom)
    except msgspec.ValidationError as error:
        raise validation_error(error) from error
