"""The one mapping of every refusal (game/errors.py) to the REST body and the Socket.IO ack; a
dependency outage becomes NOT_READY and anything else INTERNAL_ERROR, logged with its trace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import redis.asyncio as redis
from aiohttp import web

from game.errors import (
    GameError,
    InternalError,
    NotReady,
    RouteNotFound,
    ValidationFailed,
)
from server.runtime.metrics import REDIS_ERRORS
from server.wire.codec import dumps_bytes

logger = logging.getLogger("thisthat.errors")


def validation_error(error: msgspec.ValidationError) -> ValidationFailed:
    """The field a msgspec refusal names, e.g. "Expected `int` <= 200 - at `$.limit`".

    msgspec reports the path only inside its message text (ValidationError has no path
    attribute), so this is the one place that reads it back out.
    """
    text = str(error)
    field = None
    if " - at `$." in text:
        text, _, path = text.partition(" - at `$.")
        field = path.rstrip("`")
    elif "unknown field `" in text or "missing required field `" in text:
        field = text.split("`")[1]
    if not field:
        return ValidationFailed(text)
    return ValidationFailed(f"{field}: {text}", field)


# A dependency that is down or unreachable: the client should retry later.
UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    redis.ConnectionError,
    redis.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.ConnectionDoesNotExistError,
)


def refusal_for(error: Exception, channel: str, **context: Any) -> GameError:
    """What the client hears about `error`: a refusal as itself, a dependency outage as
    NOT_READY (logged as a warning), anything else as INTERNAL_ERROR (logged with its trace).

    `channel` ("rest" or "events") labels the Redis error counter.
    """
    if isinstance(error, GameError):
        return error
    if isinstance(error, UNAVAILABLE):
        if isinstance(error, redis.RedisError):
            REDIS_ERRORS.labels(channel).inc()
        logger.warning("refused: dependency unavailable", exc_info=error, extra=context)
        return NotReady()
    logger.exception("unhandled error", exc_info=error, extra=context)
    return InternalError()


def error_body(error: GameError) -> dict[str, Any]:
    """The error object both transports carry: `{"code", "message", ...fields}`."""
    return error.to_dict()


def ack_error(error: GameError) -> dict[str, Any]:
    return {"ok": False, "error": error_body(error)}


def error_response(error: GameError, headers: dict[str, str] | None = None) -> web.Response:
    status = error.http_status
    headers = dict(headers or {})
    retry_after_ms = error.details.get("retryAfterMs")
    if status == 429 and retry_after_ms is not None:
        headers["Retry-After"] = str(max(1, -(-int(retry_after_ms) // 1000)))
    return web.Response(
        status=status,
        body=dumps_bytes({"error": error_body(error)}),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as http_error:
        if http_error.status == 404:
            return error_response(RouteNotFound(f"no route {request.method} {request.path}"))
        if http_error.status == 405:
            return error_response(RouteNotFound(f"{request.method} not allowed on {request.path}"))
        raise
    except Exception as error:  # noqa: BLE001 - every error becomes a refusal, logged above
        return error_response(refusal_for(error, "rest", path=request.path, method=request.method))
