"""REST: the auth endpoints of docs/protocol.md, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from game.errors import InvalidCredentials, RateLimited, UserGone, ValidationFailed
from server import exposure, metrics, origins, scrape
from server.client_address import client_ip
from server.connections import DB_POOL, LIMITER, LOGIN_GUARD, REDIS
from server.errors import (
    AuthRequired,
    ForbiddenOrigin,
    RefreshTokenReused,
    TokenExpired,
    TokenInvalid,
    error_response,
)
from server.passwords import PASSWORDS
from server.schemas import Credentials, RefreshRequest, parse
from server.settings import RULES, SETTINGS
from server.tokens import TOKENS, IssuedToken, token_hash
from server.views import user_view
from server.wire import dumps_bytes
from storage import accounts, database
from storage.rows import User

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
        raise ValidationFailed("body must be a JSON object") from error


def _refuse_if_waiting(wait_ms: int) -> None:
    if wait_ms:
        raise RateLimited("too many attempts; slow down", wait_ms)


async def limit(request: web.Request, scope: str, subject: str, rule: tuple[int, int]) -> None:
    _refuse_if_waiting(await request.app[LIMITER].hit(scope, subject, *rule))


async def _issue_session(app: web.Application, user: User) -> dict[str, Any]:
    """An access token and the first refresh token of a new family."""
    settings = app[SETTINGS]
    tokens = app[TOKENS]
    now = datetime.now(UTC)
    pair = tokens.issue_pair(user.id, user.username, uuid.uuid4(), uuid.uuid4(), now)
    await _store_refresh(app[DB_POOL], pair.refresh, now)
    return {
        "user": user_view(user),
        "accessToken": pair.access.token,
        "refreshToken": pair.refresh.token,
        "accessExpiresIn": settings.jwt_access_expires_in,
    }


async def _store_refresh(connection: Any, refresh: IssuedToken, now: datetime) -> None:
    claims = refresh.claims
    assert claims.family_id is not None
    await accounts.store_refresh_token(
        connection,
        claims.token_id,
        claims.user_id,
        claims.family_id,
        token_hash(refresh.token),
        claims.expires_at,
        now,
    )


async def signup(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    await limit(request, "signup-ip", client_ip(request), settings.rate_limit_signup_per_ip)
    body = parse(Credentials, await read_json(request))
    body.check_password_bytes()
    password_hash = await app[PASSWORDS].hash(body.password)
    user = await accounts.create_user(
        app[DB_POOL], body.username, password_hash, app[RULES].starting_credits
    )
    logger.info("signup", extra={"userId": str(user.id)})
    return json_response(await _issue_session(app, user), status=201)


async def login(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    await limit(request, "login-ip", client_ip(request), settings.rate_limit_login_per_ip)
    body = parse(Credentials, await read_json(request))
    body.check_password_fits()
    # Only failures count against a username, and per address first: a stranger's guesses slow
    # the stranger, never the owner signing in from their own address.
    guard = app[LOGIN_GUARD]
    address = client_ip(request)
    _refuse_if_waiting(await guard.attempt(body.username, address))
    found = await accounts.get_login(app[DB_POOL], body.username)
    # Unknown users are checked against a decoy hash: same cost, same answer as a wrong password.
    if not await app[PASSWORDS].verify(body.password, found.password_hash if found else None):
        raise InvalidCredentials()
    assert found is not None
    await guard.succeeded(body.username, address)
    logger.info("login", extra={"userId": str(found.user.id)})
    return json_response(await _issue_session(app, found.user))


async def refresh(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    await limit(request, "refresh-ip", client_ip(request), settings.rate_limit_refresh_per_ip)
    body = parse(RefreshRequest, await read_json(request))
    tokens = app[TOKENS]
    now = datetime.now(UTC)
    old = tokens.verify(body.refreshToken, "refresh")
    successor_id = uuid.uuid4()
    user = None
    async with app[DB_POOL].acquire() as connection:
        async with connection.transaction():
            outcome, row = await accounts.spend_refresh_token(
                connection,
                token_hash(body.refreshToken),
                now,
                successor_id,
                timedelta(seconds=settings.refresh_reuse_grace_s),
            )
            answered = outcome in (
                accounts.RotationOutcome.ROTATED,
                accounts.RotationOutcome.REPLAYED,
            )
            if answered:
                assert row is not None
                user = await accounts.get_user(connection, row["user_id"])
            if answered and user is not None:
                assert row is not None
                if outcome is accounts.RotationOutcome.ROTATED:
                    pair = tokens.issue_pair(
                        user.id, user.username, row["family_id"], successor_id, now
                    )
                    await _store_refresh(connection, pair.refresh, now)
                else:
                    # A retry: the pair answered before, signed again from the same claims.
                    pair = tokens.issue_pair(
                        user.id, user.username, row["family_id"], row["id"], row["created_at"]
                    )
        # Outside the transaction: a detected reuse has committed its family revocation.
        if outcome is accounts.RotationOutcome.REUSED:
            logger.warning(
                "refresh token reused; family revoked", extra={"userId": str(old.user_id)}
            )
            raise RefreshTokenReused()
        if outcome is accounts.RotationOutcome.EXPIRED:
            raise TokenExpired("refresh token expired")
        if not answered:
            raise TokenInvalid("refresh token is not valid")
    if user is None:
        raise UserGone()
    return json_response(
        {
            "accessToken": pair.access.token,
            "refreshToken": pair.refresh.token,
            "accessExpiresIn": settings.jwt_access_expires_in,
        }
    )


async def logout(request: web.Request) -> web.Response:
    app = request.app
    body = parse(RefreshRequest, await read_json(request))
    app[TOKENS].verify(body.refreshToken, "refresh")
    await accounts.revoke_family_of(app[DB_POOL], token_hash(body.refreshToken))
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthRequired("send Authorization: Bearer <access token>")
    claims = request.app[TOKENS].verify(token.strip(), "access", datetime.now(UTC))
    user = await accounts.get_user(request.app[DB_POOL], claims.user_id)
    if user is None:
        raise UserGone()
    return json_response({"user": user_view(user)})


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _check_database(app: web.Application) -> tuple[bool, Any]:
    await database.ping(app[DB_POOL], timeout_s=2)
    return True, "ok"


async def _check_redis(app: web.Application) -> tuple[bool, Any]:
    await app[REDIS].ping()
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
    status: dict[str, Any] = {"status": "ok" if ready else "unavailable"}
    if exposure.sees_operator_detail(request):
        status["checks"] = results
    return json_response(status, 200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    if not exposure.sees_operator_detail(request):
        if not request.app[SETTINGS].metrics_token:
            raise web.HTTPNotFound()
        raise AuthRequired("send Authorization: Bearer <METRICS_TOKEN>")
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
    allowed = request.app[SETTINGS].cors_origins
    if origin is not None and not origins.is_allowed(origin, allowed, request.scheme, request.host):
        return error_response(ForbiddenOrigin(origin))
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
