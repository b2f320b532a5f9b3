"""REST: the auth endpoints of docs/protocol.md, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import redis.asyncio as redis
from aiohttp import web

from game.errors import (
    AuthRequired,
    ForbiddenOrigin,
    RateLimited,
    ValidationFailed,
)
from server.application.services import SERVICES
from server.auth.tokens import TOKENS
from server.http import exposure, scrape
from server.runtime import metrics
from server.runtime.local_limits import EVENT_LIMITER
from server.runtime.readiness import READINESS_CHECKS, ReadinessCheck
from server.runtime.resources import LIMITER, REDIS, ping_database
from server.settings import SETTINGS, Settings
from server.transport import origins
from server.transport.client_address import client_ip
from server.wire.codec import dumps_bytes
from server.wire.refusals import error_response
from server.wire.schemas import Credentials, RefreshRequest, parse
from server.wire.views import user_view
from services.accounts import MintedPair, Session

logger = logging.getLogger("thisthat.rest")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps_bytes(data), content_type="application/json")


async def read_json(request: web.Request) -> object:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as error:
        raise ValidationFailed("body must be a JSON object") from error


async def limit(request: web.Request, scope: str, subject: str, rule: tuple[int, int]) -> None:
    wait_ms = await request.app[LIMITER].hit(scope, subject, *rule)
    if wait_ms:
        raise RateLimited("too many attempts; slow down", wait_ms)


OPERATOR_TOKEN_SCOPE: Final = "operator-token"
# Wrong operator tokens counted in this node's memory while Redis does not answer, so the
# endpoints that show an outage keep answering the operator during one.
OPERATOR_TOKEN_FALLBACK_SCOPE: Final = "operator-token-local"


async def count_operator_token(request: web.Request, right: bool) -> None:
    """Count a presented ADMIN_TOKEN or METRICS_TOKEN against the caller's address; past
    RATE_LIMIT_OPERATOR_TOKEN_PER_IP wrong ones, every presentation from there is refused with
    RATE_LIMITED, the right token included (else the answer would still tell a guess apart).

    The attempt is counted before it is judged, so parallel guesses cannot all pass the count,
    and given back when the token was right: the operator's own scrapes cost nothing.
    """
    app = request.app
    address = client_ip(request)
    rule = app[SETTINGS].rate_limit_operator_token_per_ip
    try:
        wait_ms = await app[LIMITER].hit(OPERATOR_TOKEN_SCOPE, address, *rule)
        if not wait_ms and right:
            await app[LIMITER].give_back(OPERATOR_TOKEN_SCOPE, address)
    except (redis.RedisError, OSError):
        logger.warning("operator token attempts counted on this node: Redis is unavailable")
        wait_ms = (
            0 if right else app[EVENT_LIMITER].hit(OPERATOR_TOKEN_FALLBACK_SCOPE, address, *rule)
        )
    if wait_ms:
        raise RateLimited("too many wrong tokens from this address; slow down", wait_ms)


def presented_bearer(request: web.Request) -> str | None:
    """The bearer token the request presents, or None when it presents no credentials at all."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _session_view(settings: Settings, session: Session) -> dict[str, Any]:
    return {
        "user": user_view(session.user),
        **_tokens_view(settings, session.tokens),
    }


def _tokens_view(settings: Settings, tokens: MintedPair) -> dict[str, Any]:
    return {
        "accessToken": tokens.access_token,
        "refreshToken": tokens.refresh_token,
        "accessExpiresIn": settings.jwt_access_expires_in,
    }


async def signup(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    await limit(request, "signup-ip", client_ip(request), settings.rate_limit_signup_per_ip)
    body = parse(Credentials, await read_json(request))
    body.check_password_bytes()
    session = await app[SERVICES].accounts.signup(body.username, body.password, datetime.now(UTC))
    logger.info("signup", extra={"userId": str(session.user.id)})
    return json_response(_session_view(settings, session), status=201)


async def login(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    address = client_ip(request)
    await limit(request, "login-ip", address, settings.rate_limit_login_per_ip)
    body = parse(Credentials, await read_json(request))
    body.check_password_fits()
    session = await app[SERVICES].accounts.login(
        body.username, body.password, address, datetime.now(UTC)
    )
    logger.info("login", extra={"userId": str(session.user.id)})
    return json_response(_session_view(settings, session))


async def refresh(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    await limit(request, "refresh-ip", client_ip(request), settings.rate_limit_refresh_per_ip)
    body = parse(RefreshRequest, await read_json(request))
    app[TOKENS].verify(body.refreshToken, "refresh")
    # A retry within the grace window gets the same pair only from the client that rotated it.
    client = f"{client_ip(request)}\n{request.headers.get('User-Agent', '')}"
    rotation = await app[SERVICES].accounts.refresh(body.refreshToken, datetime.now(UTC), client)
    return json_response(_tokens_view(settings, rotation.tokens))


async def logout(request: web.Request) -> web.Response:
    app = request.app
    body = parse(RefreshRequest, await read_json(request))
    app[TOKENS].verify(body.refreshToken, "refresh")
    await app[SERVICES].accounts.logout(body.refreshToken)
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthRequired("send Authorization: Bearer <access token>")
    claims = request.app[TOKENS].verify(token.strip(), "access", datetime.now(UTC))
    user = await request.app[SERVICES].accounts.user(claims.user_id)
    return json_response({"user": user_view(user)})


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _check_database(app: web.Application) -> tuple[bool, Any]:
    await ping_database(app, timeout_s=2)
    return True, "ok"


async def _check_redis(app: web.Application) -> tuple[bool, Any]:
    await app[REDIS].ping()
    return True, "ok"


async def _operator_detail(request: web.Request) -> bool:
    """Whether this request sees the operator's detail (/metrics, /readyz's checks); a token it
    presents for that is counted per address (`count_operator_token`)."""
    allowed = exposure.sees_operator_detail(request)
    if request.app[SETTINGS].metrics_token and presented_bearer(request) is not None:
        await count_operator_token(request, allowed)
    return allowed


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    operator = await _operator_detail(request)
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
    if operator:
        status["checks"] = results
    return json_response(status, 200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    if not await _operator_detail(request):
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
