"""One mapping from errors to the REST body and the Socket.IO ack; unknown errors become INTERNAL_ERROR."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import redis.asyncio as redis
from aiohttp import web

from game.errors import ErrorCode, GameError
from server.metrics import REDIS_ERRORS

logger = logging.getLogger("thisthat.errors")

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.BET_AMOUNT_OUT_OF_RANGE: 400,
    ErrorCode.AUTH_REQUIRED: 401,
    ErrorCode.TOKEN_INVALID: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.REFRESH_TOKEN_REUSED: 401,
    ErrorCode.FORBIDDEN_ORIGIN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.MARKET_NOT_FOUND: 404,
    ErrorCode.USERNAME_TAKEN: 409,
    ErrorCode.REWARD_ALREADY_CLAIMED: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.NOT_READY: 503,
    ErrorCode.INTERNAL_ERROR: 500,
}


def validation_error(error: msgspec.ValidationError | str) -> GameError:
    """msgspec says e.g. "Expected `int` <= 200 - at `$.limit`"; the field goes into details."""
    text = str(error)
    field = None
    if " - at `$." in text:
        text, _, path = text.partition(" - at `$.")
        field = path.rstrip("`")
    elif "unknown field `" in text or "missing required field `" in text:
        field = text.split("`")[1]
    if not field:
        return GameError(ErrorCode.VALIDATION_ERROR, text)
    return GameError(ErrorCode.VALIDATION_ERROR, f"{field}: {text}", details={"field": field})


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


def not_ready() -> GameError:
    return GameError(ErrorCode.NOT_READY, "a dependency is unavailable; retry shortly")


def internal_error() -> GameError:
    return GameError(ErrorCode.INTERNAL_ERROR, "internal error; it has been logged")


def error_response(error: GameError, headers: dict[str, str] | None = None) -> web.Response:
    from server.wire import dumps_bytes

    status = HTTP_STATUS.get(error.code, 400)
    headers = dict(headers or {})
    retry_after_ms = error.details.get("retryAfterMs")
    if status == 429 and retry_after_ms is not None:
        headers["Retry-After"] = str(max(1, -(-int(retry_after_ms) // 1000)))
    return web.Response(
        status=status,
        body=dumps_bytes({"error": error.to_dict()}),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except GameError as error:
        return error_response(error)
    except web.HTTPException as http_error:
        if http_error.status == 404:
            return error_response(
                GameError(ErrorCode.NOT_FOUND, f"no route {request.method} {request.path}")
            )
        if http_error.status == 405:
            return error_response(
                GameError(ErrorCode.NOT_FOUND, f"{request.method} not allowed on {request.path}")
            )
        raise
    except UNAVAILABLE as error:
        if isinstance(error, redis.RedisError):
            REDIS_ERRORS.labels("rest").inc()
        logger.warning("dependency unavailable", exc_info=True, extra={"path": request.path})
        return error_response(not_ready())
    except Exception:
        logger.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return error_response(internal_error())


def ack_error(error: GameError) -> dict[str, Any]:
    return {"ok": False, "error": error.to_dict()}
