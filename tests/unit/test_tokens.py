"""Token claims: types cannot be swapped, algorithms are fixed, expiry and audience are checked."""

from __future__ import annotations

import base64
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import orjson
import pytest

from game.errors import ErrorCode, GameError
from server.auth.tokens import TokenService

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
USER = uuid.UUID("00000000-0000-4000-8000-000000000001")


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(
        "access-key-0123456789abcdef0123456789",
        "refresh-key-0123456789abcdef0123456789",
        900,
        86400,
        "thisthat",
        "clients",
    )


def code_of(call) -> ErrorCode:  # type: ignore[no-untyped-def]
    with pytest.raises(GameError) as caught:
        call()
    return caught.value.code


def test_access_token_round_trips_its_claims(tokens: TokenService) -> None:
    issued = tokens.issue("access", USER, datetime.now(UTC), username="alice")
    claims = tokens.verify(issued.token, "access")
    assert claims.user_id == USER
    assert claims.username == "alice"
    assert claims.token_type == "access"
    payload = jwt.decode(issued.token, options={"verify_signature": False})
    assert {"exp", "iat", "iss", "aud", "sub", "typ", "jti"} <= set(payload)


def test_access_token_is_refused_as_refresh_token_and_the_reverse(tokens: TokenService) -> None:
    access = tokens.issue("access", USER, datetime.now(UTC)).token
    refresh = tokens.issue("refresh", USER, datetime.now(UTC), family_id=uuid.uuid4()).token
    assert code_of(lambda: tokens.verify(access, "refresh")) is ErrorCode.TOKEN_INVALID
    assert code_of(lambda: tokens.verify(refresh, "access")) is ErrorCode.TOKEN_INVALID


def test_same_key_wrong_type_claim_is_refused() -> None:
    same_keys = TokenService(
        "shared-key-0123456789abcdef0123456789",
        "shared-key-0123456789abcdef0123456789",
        900,
        900,
        "i",
        "a",
    )
    refresh = same_keys.issue("refresh", USER, datetime.now(UTC)).token
    assert code_of(lambda: same_keys.verify(refresh, "access")) is ErrorCode.TOKEN_INVALID


def test_alg_none_is_refused(tokens: TokenService) -> None:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    now = int(datetime.now(UTC).timestamp())
    unsigned = (
        part({"alg": "none", "typ": "JWT"})
        + "."
        + part(
            {
                "sub": str(USER),
                "typ": "access",
                "jti": str(uuid.uuid4()),
                "iat": now,
                "exp": now + 900,
                "iss": "thisthat",
                "aud": "clients",
            }
        )
        + "."
    )
    assert code_of(lambda: tokens.verify(unsigned, "access")) is ErrorCode.TOKEN_INVALID


def test_expired_token_gives_token_expired(tokens: TokenService) -> None:
    old = tokens.issue("access", USER, datetime.now(UTC) - timedelta(hours=1)).token
    assert code_of(lambda: tokens.verify(old, "access")) is ErrorCode.TOKEN_EXPIRED


def test_wrong_audience_or_issuer_is_refused(tokens: TokenService) -> None:
    other = TokenService(
        tokens.access_secret, tokens.refresh_secret, 900, 900, "someone-else", "clients"
    )
    assert (
        code_of(
            lambda: tokens.verify(other.issue("access", USER, datetime.now(UTC)).token, "access")
        )
        is ErrorCode.TOKEN_INVALID
    )
    other = TokenService(
        tokens.access_secret, tokens.refresh_secret, 900, 900, "thisthat", "other-aud"
    )
    assert (
        code_of(
            lambda: tokens.verify(other.issue("access", USER, datetime.now(UTC)).token, "access")
        )
        is ErrorCode.TOKEN_INVALID
    )


def test_missing_token_is_auth_required(tokens: TokenService) -> None:
    assert code_of(lambda: tokens.verify(None, "access")) is ErrorCode.AUTH_REQUIRED
    assert code_of(lambda: tokens.verify("", "access")) is ErrorCode.AUTH_REQUIRED
    assert code_of(lambda: tokens.verify(42, "access")) is ErrorCode.TOKEN_INVALID


def signed(tokens: TokenService, **changes: object) -> str:
    """A token signed with the access key whose claims are the server's own, changed as given
    (a value of `...` leaves the claim out). Written by hand: PyJWT refuses some odd claims."""
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, object] = {
        "sub": str(USER),
        "typ": "access",
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 900,
        "iss": "thisthat",
        "aud": "clients",
    }
    claims.update(changes)
    claims = {key: value for key, value in claims.items() if value is not ...}

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    # json, not orjson: it writes integers past 64 bits.
    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    signature = hmac.new(tokens.access_secret.encode(), signing_input.encode(), "sha256")
    return signing_input + "." + part(signature.digest())


def test_a_hand_signed_token_with_the_servers_claims_is_valid(tokens: TokenService) -> None:
    """The control for the odd claims below: the hand signer writes what `issue` writes."""
    assert tokens.verify(signed(tokens), "access").user_id == USER


@pytest.mark.parametrize(
    "exp",
    [
        pytest.param("float", id="float"),
        pytest.param("string", id="string"),
        pytest.param(10**20, id="huge"),
        pytest.param(2**64, id="past-64-bits"),
        pytest.param(1e300, id="huge-float"),
        pytest.param(-1, id="negative"),
        pytest.param(-(10**20), id="huge-negative"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
        pytest.param([], id="list"),
        pytest.param(..., id="missing"),
    ],
)
def test_a_signed_token_with_an_odd_exp_is_token_invalid(tokens: TokenService, exp: object) -> None:
    now = int(datetime.now(UTC).timestamp())
    if exp == "float":
        exp = now + 900.5
    elif exp == "string":
        exp = str(now + 900)
    token = signed(tokens, exp=exp)
    assert code_of(lambda: tokens.verify(token, "access")) is ErrorCode.TOKEN_INVALID
    assert code_of(lambda: tokens.verify(token, "access", datetime.now(UTC))) is (
        ErrorCode.TOKEN_INVALID
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": 12345},
        {"sub": ["x"]},
        {"jti": None},
        {"fam": 7},
        {"name": ["alice"]},
        {"iat": "yesterday"},
        {"iat": 1e300},
        {"iat": ...},
        {"typ": 1},
    ],
    ids=repr,
)
def test_a_signed_token_with_odd_claims_is_token_invalid(
    tokens: TokenService, changes: dict[str, object]
) -> None:
    token = signed(tokens, **changes)
    assert code_of(lambda: tokens.verify(token, "access")) is ErrorCode.TOKEN_INVALID
