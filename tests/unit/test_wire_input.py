"""The schema edge: decimals, ids, cursors and passwords a client can send, read strictly.

Anything the server did not write or cannot store is VALIDATION_ERROR naming the field, here,
before a handler or the database sees it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from game.errors import ErrorCode, GameError
from server.wire.schemas import BetPlace, Credentials, MarketGet, MarketIds, parse, read_decimal
from server.wire.views import (
    decode_cursor,
    decode_seq_cursor,
    decode_time_id_cursor,
    encode_cursor,
)

MARKET = uuid.UUID("3ee0c352-7e94-476e-a49a-e88408343ebd")
BET = {"marketId": str(MARKET), "side": "this", "amount": "10.00", "clientBetId": "b1"}
HUGE = "1" * 20_000
TINY_AND_LONG = "0." + "1" * 20_000


def field_of(call) -> str | None:  # type: ignore[no-untyped-def]
    with pytest.raises(GameError) as caught:
        call()
    assert caught.value.code is ErrorCode.VALIDATION_ERROR, caught.value
    return caught.value.to_dict().get("details", {}).get("field")  # type: ignore[no-any-return]


@pytest.mark.parametrize("value", ["12.50", "10", 10, 12.5, "0.0001", "1E+2", "-0", "1e-18"])
def test_plain_decimals_are_read_exactly(value: object) -> None:
    assert read_decimal(value) == Decimal(str(value))


@pytest.mark.parametrize(
    "value",
    ["NaN", "sNaN", "-NaN", "Infinity", "inf", "1E-999999999", "1E+999999999", HUGE,
     TINY_AND_LONG, "1_000", " 12 ", "١٢", "0x10", "", ".5", "+5", "1e-19", "1e18", 10**18,
     True, None, [], {}],
    ids=lambda value: repr(value)[:20],
)  # fmt: skip
def test_odd_decimals_are_refused(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        read_decimal(value)


@pytest.mark.parametrize("field", ["amount", "expectedOdds", "maxSlippage"])
@pytest.mark.parametrize(
    "value", ["NaN", "sNaN", "1E-999999999", HUGE, TINY_AND_LONG], ids=lambda v: v[:12]
)
def test_a_bet_with_an_odd_decimal_is_a_validation_error_naming_the_field(
    field: str, value: str
) -> None:
    assert field_of(lambda: parse(BetPlace, {**BET, field: value})) == field


def test_a_bet_reads_its_decimals_and_id_as_values() -> None:
    bet = parse(BetPlace, {**BET, "marketId": str(MARKET).upper(), "expectedOdds": 0.4})
    assert bet.marketId == MARKET
    assert bet.amount == Decimal("10.00")
    assert bet.expectedOdds == Decimal("0.4")
    assert bet.maxSlippage == 0


@pytest.mark.parametrize(
    "text",
    [
        "3ee0c352-7e94476e-a49a-e884-08343ebd",  # dashes moved
        "----3ee0c3527e94476ea49ae88408343ebd",
        "3ee0c3527e94-476e-a49a-e88408343ebd-",
        "{3ee0c352-7e94-476e-a49a-e88408343ebd}",
        "urn:uuid:3ee0c352-7e94-476e-a49a-e88408343ebd",
        "3ee0c352-7e94-476e-a49a-e88408343eb",
        "g" * 36,
    ],
)
def test_an_id_with_its_dashes_moved_or_dressed_up_is_refused(text: str) -> None:
    assert field_of(lambda: parse(MarketGet, {"marketId": text})) == "marketId"
    assert field_of(lambda: parse(MarketIds, {"marketIds": [str(MARKET), text]})) == (
        "marketIds[1]"
    )


def test_an_id_names_one_market_however_it_is_spelled() -> None:
    for text in (str(MARKET), str(MARKET).upper(), MARKET.hex):
        assert parse(MarketGet, {"marketId": text}).marketId == MARKET


def test_cursors_round_trip() -> None:
    assert decode_seq_cursor(encode_cursor(42)) == 42
    assert decode_seq_cursor(encode_cursor(2**63 - 1)) == 2**63 - 1
    at = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
    assert decode_time_id_cursor(encode_cursor(at.isoformat(), MARKET)) == (at, MARKET)
    assert decode_cursor(encode_cursor("a", "b"), 2) == ["a", "b"]


@pytest.mark.parametrize(
    "cursor",
    [
        "²",
        encode_cursor("²"),
        encode_cursor("١"),
        encode_cursor(2**63),
        encode_cursor(2**64),
        encode_cursor(-1),
        encode_cursor("007"),
        encode_cursor(" 7"),
        encode_cursor(7) + "=",
        "MR",  # "1" with spare bits set: not what encode_cursor writes
        "",
        "!!!",
        encode_cursor(1, 2),
    ],
)
def test_a_ledger_cursor_the_server_did_not_write_is_refused(cursor: str) -> None:
    assert field_of(lambda: decode_seq_cursor(cursor)) == "cursor"


@pytest.mark.parametrize(
    "time_text",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2026-11-25T12:00:00+01:00",
        "2026-11-25T12:00:00",
        "2026-11-25 12:00:00+00:00",
        "2026-11-25T12:00:00Z",
        "yesterday",
    ],
)
def test_a_bet_cursor_at_another_offset_or_spelling_is_refused(time_text: str) -> None:
    cursor = encode_cursor(time_text, MARKET)
    assert field_of(lambda: decode_time_id_cursor(cursor)) == "cursor"


def test_a_bet_cursor_with_an_id_not_in_canonical_form_is_refused() -> None:
    at = datetime(2026, 11, 25, tzinfo=UTC).isoformat()
    for text in (str(MARKET).upper(), MARKET.hex, "x"):
        assert field_of(lambda t=text: decode_time_id_cursor(encode_cursor(at, t))) == "cursor"


def test_a_login_password_over_72_bytes_is_refused_like_one_over_72_characters() -> None:
    within_characters = Credentials(username="alice", password="é" * 37)  # 37 chars, 74 bytes
    assert field_of(within_characters.check_password_fits) == "password"
    Credentials(username="alice", password="é" * 36).check_password_fits()
    Credentials(username="alice", password="short").check_password_fits()
    assert field_of(lambda: parse(Credentials, {"username": "alice", "password": "x" * 73})) == (
        "password"
    )
