"""REST: the auth endpoints of PROTOCOL.md, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from game.errors import ErrorCode, GameError
from server import appkeys, metrics, origins, scrape
from server.client_address import client_ip
from server.errors import error_response
from server.schemas import Credentials, RefreshRequest, parse
from server.tokens import token_hash
from server.views import user_view
from server.wire import dumps_bytes
from storage import accounts

logger = logging.getLogger("thisthat.rest")

# Extra readiness checks (the feed adds its own) answer (healthy, detail).
ReadinessCheck = Callable[[web.Application], Awaitable[tuple[bool, Any]]]
READINESS_CHECKS = web.AppKey("readiness_checks", dict[str, ReadinessCheck])


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps_bytes(data), content_type="application/json")


async def read_json(request: web.Request) -> object:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as error:
        raise GameError(ErrorCode.VALIDATION_ERROR, "body must be a JSON object") from error


async def limit(request: web.Request, scope: str, subject: str, rule: tuple[int, int]) -> None:
    wait_ms = await request.app[appkeys.LIMITER].hit(scope, subject, *rule)
    if wait_ms:
        raise GameError(
            ErrorCode.RATE_LIMITED, "too many attempts; slow down", retryAfterMs=wait_ms
        )


async def _issue_session(app: web.Application, user: Any) -> dict[str, Any]:
    """An access token and the first refresh token of a new family."""
    settings = app[appkeys.SETTINGS]
    tokens = app[appkeys.TOKENS]
    now = datetime.now(UTC)
    access = tokens.issue("access", user["id"], now, username=user["username"])
    refresh = tokens.issue("refresh", user["id"], now, family_id=uuid.uuid4())
    await accounts.store_refresh_token(
        app[appkeys.DB_POOL],
        refresh.claims.token_id,
        user["id"],
        refresh.claims.family_id,  # type: ignore[arg-type]
        token_hash(refresh.token),
        refresh.claims.expires_at,
    )
    return {
        "user": user_view(user),
        "accessToken": access.token,
        "refreshToken": refresh.token,
        "accessExpiresIn": settings.jwt_access_expires_in,
    }


async def signup(request: web.Request) -> web.Response:
    app = request.app
    settings = app[appkeys.SETTINGS]
    await limit(request, "signup-ip", client_ip(request), settings.rate_limit_signup_per_ip)
    body = parse(Credentials, await read_json(request))
    body.check_password_bytes()
    password_hash = await app[appkeys.PASSWORDS].hash(body.password)
    user = await accounts.create_user(
        app[appkeys.DB_POOL], body.username, password_hash, app[appkeys.RULES].starting_credits
    )
    logger.info("signup", extra={"userId": str(user["id"])})
    return json_response(await _issue_session(app, user), status=201)


async def login(request: web.Request) -> web.Response:
    app = request.app
    settings = app[appkeys.SETTINGS]
    await limit(request, "login-ip", client_ip(request), settings.rate_limit_login_per_ip)
    body = parse(Credentials, await read_json(request))
    body.check_password_fits()
    await limit(
        request, "login-user", body.username.lower(), settings.rate_limit_login_per_username
    )
    row = await accounts.get_login(app[appkeys.DB_POOL], body.username)
    # Unknown users are checked against a decoy hash: same cost, same answer as a wrong password.
    if not await app[appkeys.PASSWORDS].verify(
        body.password, row["password_hash"] if row else None
    ):
        raise GameError(ErrorCode.INVALID_CREDENTIALS, "unknown username or wrong password")
    assert row is not None
    logger.info("login", extra={"userId": str(row["id"])})
    return json_response(await _issue_session(app, row))


async def refresh(request: web.Request) -> web.Response:
    app = request.app
    await limit(
        request, "refresh-ip", client_ip(request), app[appkeys.SETTINGS].rate_limit_refresh_per_ip
    )
    body = parse(RefreshRequest, await read_json(request))
    tokens = app[appkeys.TOKENS]
    now = datetime.now(UTC)
    old = tokens.verify(body.refreshToken, "refresh")
    async with app[appkeys.DB_POOL].acquire() as connection:
        async with connection.transaction():
            outcome, row = await accounts.spend_refresh_token(
                connection, token_hash(body.refreshToken), now
            )
            if outcome is accounts.RotationOutcome.ROTATED:
                assert row is not None
                new = tokens.issue("refresh", row["user_id"], now, family_id=row["family_id"])
                await accounts.store_refresh_token(
                    connection,
                    new.claims.token_id,
                    row["user_id"],
                    row["family_id"],
                    token_hash(new.token),
                    new.claims.expires_at,
                )
        # Outside the transaction: a detected reuse has committed its family revocation.
        if outcome is accounts.RotationOutcome.REUSED:
            logger.warning(
                "refresh token reused; family revoked", extra={"userId": str(old.user_id)}
            )
            raise GameError(
                ErrorCode.REFRESH_TOKEN_REUSED, "refresh token was already used; sign in again"
            )
        if outcome is accounts.RotationOutcome.EXPIRED:
            raise GameError(ErrorCode.TOKEN_EXPIRED, "refresh token expired")
        if outcome is not accounts.RotationOutcome.ROTATED:
            raise GameError(ErrorCode.TOKEN_INVALID, "refresh token is not valid")
        assert row is not None
        user = await accounts.get_user(connection, row["user_id"])
    if user is None:
        raise GameError(ErrorCode.TOKEN_INVALID, "user no longer exists")
    access = tokens.issue("access", user["id"], now, username=user["username"])
    return json_response(
        {
            "accessToken": access.token,
            "refreshToken": new.token,
            "accessExpiresIn": app[appkeys.SETTINGS].jwt_access_expires_in,
        }
    )


async def logout(request: web.Request) -> web.Response:
    app = request.app
    body = parse(RefreshRequest, await read_json(request))
    app[appkeys.TOKENS].verify(body.refreshToken, "refresh")
    await accounts.revoke_family_of(app[appkeys.DB_POOL], token_hash(body.refreshToken))
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise GameError(ErrorCode.AUTH_REQUIRED, "send Authorization: Bearer <access token>")
    claims = request.app[appkeys.TOKENS].verify(token.strip(), "access", datetime.now(UTC))
    user = await accounts.get_user(request.app[appkeys.DB_POOL], claims.user_id)
    if user is None:
        raise GameError(ErrorCode.TOKEN_INVALID, "user no longer exists")
    return json_response({"user": user_view(user)})


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _check_database(app: web.Application) -> tuple[bool, Any]:
    await app[appkeys.DB_POOL].fetchval("SELECT 1", timeout=2)
    return True, "ok"


async def _check_redis(app: web.Application) -> tuple[bool, Any]:
    await app[appkeys.REDIS].ping()
    return True, "ok"


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    extra: dict[str, ReadinessCheck] = app[READINESS_CHECKS]
    checks: dict[str, ReadinessCheck] = {
        "database": _check_database,
        "redis": _check_redis,
        **extra,
    }
    results: dict[str, Any] = {}
    ready = True
    for name, check in checks.items():
        try:
            healthy, detail = await asyncio.wait_for(check(app), timeout=3)
        except Exception as error:  # noqa: BLE001 - any failure means "not ready", reported by name
            healthy, detail = False, f"error: {type(error).__name__}"
        results[name] = detail
        ready = ready and healthy
    return json_response(
        {"status": "ok" if ready else "unavailable", "checks": results}, 200 if ready else 503
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    await scrape.refresh(request.app)
    body, content_type = metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


@web.middleware
async def cors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """An allowlist (CORS_ORIGINS) plus the server's own origin, never `*`; others get 403."""
    if request.path.startswith("/socket.io"):
        return await handler(request)  # engine.io checks the handshake Origin itself
    origin = request.headers.get("Origin")
    allowed = request.app[appkeys.SETTINGS].cors_origins
    if origin is not None and not origins.is_allowed(origin, allowed, request.scheme, request.host):
        return error_response(
            GameError(ErrorCode.FORBIDDEN_ORIGIN, f"origin {origin} is not allowed")
        )
    if request.method == "OPTIONS" and origin is not None:
        response: web.StreamResponse = web.Response(status=204)
    else:
        response = await handler(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path.startswith("/socket.io"):
        return await handler(request)
    started = time.perf_counter()
    route = (
        request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else "unmatched"
    )
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        metrics.REST_REQUESTS.labels(route, request.method, str(status)).inc()
        metrics.REST_LATENCY.labels(route).observe(time.perf_counter() - started)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/auth/signup", signup)
    app.router.add_post("/auth/login", login)
    app.router.add_post("/auth/refresh", refresh)
    app.router.add_post("/auth/logout", logout)
    app.router.add_get("/auth/me", me)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
