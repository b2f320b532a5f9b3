"""Hypothesis strategies for hostile input, derived from the types the server validates with.

`payloads(schema)` reads a payload struct's fields through msgspec's type information, so a new
event, endpoint or field is fuzzed without a line here. Each field is left out, given a value
near its rules (bounds, patterns, literals, ids spelled every way), or given any JSON at all;
the whole payload is sometimes not an object. Fields some parts of the server read with extra
care have their own generators: cursors, ids, decimals and tokens.

Only JSON that the client's encoder writes and orjson reads is generated (no lone surrogates,
no NaN or Infinity, no number past a double's range): the answer to unparsable packets is a
matter of the transport, not of a payload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

import msgspec
from hypothesis import strategies as st

from server.wire.views import encode_cursor

OMIT: Final = object()

# Text a JSON encoder writes and orjson reads back: no lone surrogates.
TEXT_CHARS: Final = st.characters(exclude_categories=["Cs"])
texts = st.text(TEXT_CHARS, max_size=40)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=8,
)

ODD_DECIMALS: Final = [
    "NaN",
    "nan",
    "-NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    "1E-999999999",
    "1E+999999999",
    "1e-30",
    "0E-50",
    "0E+50",
    "1_000",
    " 12 ",
    "١٢",
    "0x10",
    "",
    "1e",
    ".5",
    "5.",
    "+5",
    "-0",
    "10.001",
    "1" * 20_000,
    "0." + "1" * 20_000,
    "1" + "0" * 19,
]
PLAIN_DECIMALS: Final = ["0", "0.5", "0.0001", "0.9999", "1", "10", "10.00", "100.5", "10000"]

odd_decimals = st.sampled_from(ODD_DECIMALS)
# The named odd decimals weigh as much as all the generated ones together.
decimal_inputs = st.one_of(
    odd_decimals,
    odd_decimals,
    odd_decimals,
    odd_decimals,
    st.sampled_from(PLAIN_DECIMALS),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=-1, max_value=20_000
    ).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=False, allow_infinity=False),
    st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{1,6})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
)

HEX = "0123456789abcdef"


def uuid_spellings(known: uuid.UUID) -> st.SearchStrategy[str]:
    """One id spelled every way a client might: canonical, upper case, no dashes, dashes moved,
    braces, a URN, padded."""
    plain = known.hex

    def moved_dashes(positions: list[int]) -> str:
        text = plain
        for position in sorted(positions, reverse=True):
            text = text[:position] + "-" + text[position:]
        return text

    return st.sampled_from(
        [
            str(known),
            str(known).upper(),
            plain,
            "{" + str(known) + "}",
            "urn:uuid:" + str(known),
            " " + str(known),
            str(known)[:-1],
        ]
    ) | st.lists(st.integers(1, 31), min_size=4, max_size=4).map(moved_dashes)


def uuid_inputs(known: list[uuid.UUID]) -> st.SearchStrategy[Any]:
    spelled = st.sampled_from(known).flatmap(uuid_spellings) if known else st.nothing()
    return (
        spelled
        | st.uuids().map(str)
        | st.text(HEX + "-ABCDEF", min_size=30, max_size=40)
        | st.just("00000000-0000-0000-0000-000000000000")
    )


def _offset(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


cursor_times = st.datetimes(
    min_value=datetime(1, 1, 1),  # noqa: DTZ001 - the bounds of a datetimes() strategy are naive
    max_value=datetime(9999, 12, 31, 23, 59, 59),  # noqa: DTZ001
    timezones=st.integers(-14 * 60, 14 * 60).map(_offset) | st.just(UTC) | st.none(),
)
cursor_parts = (
    texts
    | st.integers(min_value=-(2**70), max_value=2**70).map(str)
    | st.sampled_from(["²", "0", "-1", str(2**63 - 1), str(2**63), str(2**64), "١", " 1", "1.0"])
    | cursor_times.map(datetime.isoformat)
    | st.uuids().map(str)
)
cursors = (
    texts
    | st.text(string.ascii_letters + string.digits + "-_=+/", max_size=80)
    | st.sampled_from(["²", "", "=", "AA==", "MA", "MQ", "x" * 201])
    | st.lists(cursor_parts, min_size=1, max_size=3).map(lambda parts: encode_cursor(*parts))
    | st.tuples(cursor_times, st.uuids()).map(
        lambda pair: encode_cursor(pair[0].isoformat(), pair[1])
    )
    # A time and a count (market activity's positions), the count at and past its bounds.
    | st.tuples(
        cursor_times,
        st.integers(-2, 10**10) | st.sampled_from([999_999_999, 10**9, 2**63]),
    ).map(lambda pair: encode_cursor(pair[0].isoformat(), pair[1]))
    | st.sampled_from(
        [
            # The year-1 and year-9999 times at the far offsets: in range for Python, not in UTC.
            encode_cursor("0001-01-01T00:00:00+14:00", uuid.UUID(int=1)),
            encode_cursor("9999-12-31T23:59:59-14:00", uuid.UUID(int=1)),
            encode_cursor("²"),
            encode_cursor(2**64),
            encode_cursor(2**63),
        ]
    )
    | st.binary(max_size=30).map(lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("="))
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def hs256(claims: Mapping[str, Any], secret: str) -> str:
    """A JWT signed as the server signs, with any claims (PyJWT refuses to write some odd ones)."""
    signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def signed_tokens(
    secrets: list[str], issuer: str, audience: str, user_id: uuid.UUID
) -> st.SearchStrategy[str]:
    """Tokens signed with the server's own keys whose claims are odd: every claim the server
    writes, some replaced by another value (float, string, huge, negative) or left out."""
    now = int(datetime.now(UTC).timestamp())
    base: dict[str, Any] = {
        "sub": str(user_id),
        "typ": "access",
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
        "iss": issuer,
        "aud": audience,
        "name": "fuzz",
        "fam": str(uuid.uuid4()),
    }
    odd_times = st.sampled_from(
        [str(now + 600), 10**20, 1e300, 2**63, 2**64, now + 600.5, -1, 0, True, [], {}, None, OMIT]
    )
    odd = json_scalars | st.sampled_from(["access", "refresh", str(user_id), issuer, audience])
    odd_time = st.builds(
        lambda key, value: {key: value}, st.sampled_from(["exp", "iat"]), odd_times
    )
    changes = st.one_of(
        st.just({}),
        odd_time,
        odd_time,
        odd_time,
        st.dictionaries(st.sampled_from(sorted(base)), odd | st.just(OMIT), min_size=1, max_size=3),
    )

    def sign(secret: str, change: Mapping[str, Any]) -> str:
        claims = {**base, **change}
        claims = {key: value for key, value in claims.items() if value is not OMIT}
        return hs256(claims, secret)

    return st.builds(sign, st.sampled_from(secrets), changes)


Aims = Mapping[str, st.SearchStrategy[Any]]


@dataclass(frozen=True)
class Targets:
    """Real things to aim at, by field name or by type ("uuid"): `valid` values pass the rules
    (the real market's id, the player's own token), `odd` ones are lookalikes."""

    valid: Aims = field(default_factory=dict)
    odd: Aims = field(default_factory=dict)


def _key(info: msgspec.inspect.Type, name: str, aims: Aims) -> st.SearchStrategy[Any] | None:
    if name in aims:
        return aims[name]
    if isinstance(info, msgspec.inspect.UUIDType):
        return aims.get("uuid")
    return None


def _unwrap(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    return info.type if isinstance(info, msgspec.inspect.Metadata) else info


def _is_decimal(info: msgspec.inspect.Type) -> bool:
    return isinstance(info, msgspec.inspect.DecimalType) or (
        isinstance(info, msgspec.inspect.CustomType) and issubclass(info.cls, Decimal)
    )


# Aware times as RFC 3339 text, where the game has odds; and lookalikes: no zone, the far ends of
# the calendar at the far offsets, other spellings, numbers.
aware_times = st.datetimes(
    min_value=datetime(2000, 1, 2),  # noqa: DTZ001 - the bounds of a datetimes() strategy are naive
    max_value=datetime(2999, 12, 30),  # noqa: DTZ001
    timezones=st.integers(-14 * 60, 14 * 60).map(_offset) | st.just(UTC),
).map(datetime.isoformat)
odd_times = (
    cursor_times.map(datetime.isoformat)
    | st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "1999-12-31T23:59:59Z",
            "3000-01-01T00:00:00Z",
            "2026-01-01",
            "2026-01-01 00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:00.1234567890Z",
            "now",
            "",
        ]
    )
    | st.integers(-(2**40), 2**40)
)


def valid_value(info: msgspec.inspect.Type, name: str, targets: Targets) -> st.SearchStrategy[Any]:
    """Values that pass the field's own rules."""
    info = _unwrap(info)
    aimed = _key(info, name, targets.valid)
    if aimed is not None:
        return aimed
    if isinstance(info, msgspec.inspect.DateTimeType):
        return aware_times
    if isinstance(info, msgspec.inspect.IntType):
        low = info.ge if info.ge is not None else -(2**31)
        high = info.le if info.le is not None else 2**31
        return st.integers(low, high)
    if isinstance(info, msgspec.inspect.StrType):
        if info.pattern:
            return st.from_regex(info.pattern, fullmatch=True)
        return st.text(TEXT_CHARS, min_size=info.min_length or 0, max_size=info.max_length or 40)
    if isinstance(info, msgspec.inspect.LiteralType):
        return st.sampled_from(list(info.values))
    if isinstance(info, msgspec.inspect.UUIDType):
        return st.uuids().map(str)
    if _is_decimal(info):
        return st.sampled_from(PLAIN_DECIMALS) | st.decimals(
            min_value=0, max_value=10_000, places=2
        ).map(str)
    if isinstance(info, msgspec.inspect.ListType):
        return st.lists(
            valid_value(info.item_type, name, targets),
            min_size=info.min_length or 0,
            max_size=min(info.max_length or 4, 4),
        )
    if isinstance(info, msgspec.inspect.UnionType):
        return st.one_of([valid_value(member, name, targets) for member in info.types])
    if isinstance(info, msgspec.inspect.NoneType):
        return st.none()
    if isinstance(info, msgspec.inspect.BoolType):
        return st.booleans()
    return json_values


def odd_value(info: msgspec.inspect.Type, name: str, targets: Targets) -> st.SearchStrategy[Any]:
    """Near misses of the field's rules (bounds, lookalike spellings, odd decimals), or anything."""
    info = _unwrap(info)
    odd = _odd(info, name, targets) | json_values
    aimed = _key(info, name, targets.odd)
    # Lookalikes of the real thing find more than noise: they weigh as much as the rest.
    return odd if aimed is None else st.one_of(aimed, aimed, aimed, odd)


def _odd(info: msgspec.inspect.Type, name: str, targets: Targets) -> st.SearchStrategy[Any]:
    info = _unwrap(info)
    if isinstance(info, msgspec.inspect.DateTimeType):
        return odd_times
    if isinstance(info, msgspec.inspect.IntType):
        low = info.ge if info.ge is not None else -(2**63)
        high = info.le if info.le is not None else 2**63
        return (
            st.integers(low - 2, high + 2)
            | st.sampled_from([low - 1, high + 1, 2**63, -(2**63) - 1, 10**30])
            | st.sampled_from([str(low), f"{high}.0", float(low), True])
        )
    if isinstance(info, msgspec.inspect.StrType):
        size = info.max_length or 80
        odd = st.text(TEXT_CHARS, max_size=size + 4) | st.just("x" * (size + 1))
        if name == "cursor":
            odd = odd | cursors
        return odd
    if isinstance(info, msgspec.inspect.LiteralType):
        return st.sampled_from(list(info.values)).map(
            lambda value: value.upper() if isinstance(value, str) else str(value)
        )
    if isinstance(info, msgspec.inspect.UUIDType):
        return uuid_inputs([])
    if _is_decimal(info):
        return decimal_inputs
    if isinstance(info, msgspec.inspect.ListType):
        valid = valid_value(info.item_type, name, targets)
        odd = odd_value(info.item_type, name, targets)
        longest = info.max_length if info.max_length is not None else 8
        return (
            st.lists(valid | odd, min_size=1, max_size=min(longest, 4))
            | st.builds(lambda value: [value] * (longest + 1), valid)
            | st.just([])
        )
    if isinstance(info, msgspec.inspect.UnionType):
        return st.one_of([_odd(member, name, targets) for member in info.types])
    return json_values


@st.composite
def _objects(draw: st.DrawFn, info: msgspec.inspect.StructType, targets: Targets) -> Any:
    """Every field valid but for up to two, each of those left out, near its rules or anything;
    sometimes an unknown field besides."""
    names = [field.encode_name for field in info.fields]
    spoiled = draw(st.sets(st.sampled_from(names), max_size=2)) if names else set()
    payload: dict[str, Any] = {}
    for item in info.fields:
        name = item.encode_name
        if name in spoiled:
            # Hypothesis leans to the first branch of a choice: make that the odd value.
            value = draw(odd_value(item.type, name, targets) | st.just(OMIT))
        elif item.required or draw(st.booleans()):
            value = draw(valid_value(item.type, name, targets))
        else:
            value = OMIT
        if value is not OMIT:
            payload[name] = value
    if draw(st.integers(0, 9)) == 9:
        payload = {**draw(st.dictionaries(texts, json_values, min_size=1, max_size=2)), **payload}
    return payload


def payloads(
    schema: type[msgspec.Struct], targets: Targets | None = None
) -> st.SearchStrategy[Any]:
    """Payloads for `schema`, read from its msgspec type information: mostly objects of its
    fields with a few spoiled, sometimes a value that is not an object at all."""
    info = msgspec.inspect.type_info(schema)
    assert isinstance(info, msgspec.inspect.StructType), schema
    objects = _objects(info, targets or Targets())
    return st.one_of(objects, objects, objects, objects, objects, json_values)
