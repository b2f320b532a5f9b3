"""JWT access and refresh tokens: HS256 only, two keys, and a type claim so one never passes as the other."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import jwt
import msgspec
from aiohttp import web

from game.errors import AuthRequired, TokenExpired, TokenInvalid
from services.accounts import MintedPair

# Hard-coded: the algorithm is never taken from the token header, so `alg: none` and
# key-confusion tricks are refused by construction.
ALGORITHMS: Final = ["HS256"]
REQUIRED_CLAIMS: Final = ["exp", "iat", "iss", "aud", "sub", "typ", "jti"]

TokenType = Literal["access", "refresh"]

# Seconds since the epoch as this server writes them: whole, and within datetime's range.
Timestamp = Annotated[int, msgspec.Meta(ge=0, le=253402300799)]


class SignedClaims(msgspec.Struct):
    """The claims `issue` writes, with the types it writes them in. A token signed with the right
    key is still refused unless its claims read back as these (a float, string, huge or negative
    `exp`, a numeric `sub`): the key proves who signed it, not that it was written by `issue`."""

    sub: uuid.UUID
    typ: str
    jti: uuid.UUID
    iat: Timestamp
    exp: Timestamp
    fam: uuid.UUID | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    token_type: TokenType
    token_id: uuid.UUID
    expires_at: datetime
    family_id: uuid.UUID | None = None
    username: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: TokenClaims


@dataclass(frozen=True, slots=True)
class TokenService:
    access_secret: str
    refresh_secret: str
    access_ttl_s: int
    refresh_ttl_s: int
    issuer: str
    audience: str

    def _secret(self, token_type: TokenType) -> str:
        return self.access_secret if token_type == "access" else self.refresh_secret

    def issue(
        self,
        token_type: TokenType,
        user_id: uuid.UUID,
        now: datetime,
        *,
        family_id: uuid.UUID | None = None,
        username: str | None = None,
        token_id: uuid.UUID | None = None,
    ) -> IssuedToken:
        """A signed token. The same claims (token id and `now` included) sign to the same text."""
        ttl = self.access_ttl_s if token_type == "access" else self.refresh_ttl_s
        expires_at = now + timedelta(seconds=ttl)
        token_id = token_id or uuid.uuid4()
        payload: dict[str, Any] = {
            "sub": str(user_id),
            "typ": token_type,
            "jti": str(token_id),
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "iss": self.issuer,
            "aud": self.audience,
        }
        if family_id is not None:
            payload["fam"] = str(family_id)
        if username is not None:
            payload["name"] = username
        token = jwt.encode(payload, self._secret(token_type), algorithm=ALGORITHMS[0])
        claims = TokenClaims(
            user_id,
            token_type,
            token_id,
            datetime.fromtimestamp(payload["exp"], UTC),
            family_id,
            username,
        )
        return IssuedToken(token, claims)

    def issue_pair(
        self,
        user_id: uuid.UUID,
        username: str,
        family_id: uuid.UUID,
        refresh_id: uuid.UUID,
        issued_at: datetime,
    ) -> MintedPair:
        """A session's pair (services.accounts.TokenMint), derived from its refresh token's id and time.

        Deriving it (the access token's id comes from the refresh token's) lets a retry within the
        grace window get the very same pair again from what the database keeps, which is no
        secret: the ids and the issue time. Only the signing keys turn them into tokens.
        """
        access = self.issue(
            "access",
            user_id,
            issued_at,
            username=username,
            token_id=uuid.uuid5(refresh_id, "access"),
        )
        refresh = self.issue(
            "refresh", user_id, issued_at, family_id=family_id, token_id=refresh_id
        )
        return MintedPair(access.token, refresh.token, refresh.claims.expires_at)

    def verify(
        self, token: object, token_type: TokenType, now: datetime | None = None
    ) -> TokenClaims:
        """Claims of a valid token of that type, or TOKEN_INVALID / TOKEN_EXPIRED / AUTH_REQUIRED."""
        if not token:
            raise AuthRequired("a token is required")
        if not isinstance(token, str):
            raise TokenInvalid("token must be a string")
        try:
            # Expiry is checked below, once `exp` is known to be a timestamp this server could
            # have written: a negative or fractional one is not ours, so invalid, not expired.
            payload = jwt.decode(
                token,
                self._secret(token_type),
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS, "verify_exp": False},
                leeway=0,
            )
            claims = msgspec.convert(payload, SignedClaims, strict=True)
        except (
            jwt.PyJWTError,
            msgspec.ValidationError,
            ValueError,
            TypeError,
            OverflowError,
        ) as error:
            raise TokenInvalid(f"invalid {token_type} token") from error
        if claims.typ != token_type:
            raise TokenInvalid(f"not a {token_type} token")
        expires_at = datetime.fromtimestamp(claims.exp, UTC)
        if expires_at <= (now or datetime.now(UTC)):
            raise TokenExpired(f"{token_type} token expired")
        return TokenClaims(claims.sub, token_type, claims.jti, expires_at, claims.fam, claims.name)


TOKENS: Final = web.AppKey("tokens", TokenService)
