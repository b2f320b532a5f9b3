"""Socket.IO event routing: one handler per event, its payload schema, and the ack envelope.

Every event goes through the same steps: the socket must be authenticated and its token live,
the user must be within the rate limit, the payload must match its schema; then the handler runs
and its result (or error) becomes `{"ok": true, "data": ...}` / `{"ok": false, "error": ...}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import redis.asyncio as redis
from aiohttp import web

from game.errors import ErrorCode, GameError
from server import appkeys, metrics
from server.drain import DRAIN
from server.errors import UNAVAILABLE, ack_error, internal_error, not_ready
from server.schemas import Payload, parse
from server.sessions import SocketSession

logger = logging.getLogger("thisthat.events")

P = TypeVar("P", bound=Payload)


@dataclass(slots=True)
class EventContext:
    app: web.Application
    session: SocketSession

    @property
    def sid(self) -> str:
        return self.session.sid


Handler = Callable[[EventContext, P], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Route(Generic[P]):
    name: str
    schema: type[P]
    handler: Handler[P]
    # Which rate-limit bucket the event draws from: bets have their own.
    limit_scope: str
    # auth:refresh must work on a socket whose token just ran out; nothing else may.
    live_token: bool


class EventRouter:
    def __init__(self) -> None:
        self.routes: dict[str, Route[Any]] = {}

    def event(
        self, name: str, schema: type[P], *, limit_scope: str = "events", live_token: bool = True
    ) -> Callable[[Handler[P]], Handler[P]]:
        def register(handler: Handler[P]) -> Handler[P]:
            if name in self.routes:
                raise ValueError(f"event {name!r} registered twice")
            self.routes[name] = Route(name, schema, handler, limit_scope, live_token)
            return handler

        return register


router = EventRouter()


async def dispatch(
    app: web.Application, route: Route[Any], sid: str, data: object
) -> dict[str, Any]:
    started = time.perf_counter()
    outcome = "ok"
    drain = app[DRAIN]
    entered = False
    try:
        # A node shutting down answers at once (NOT_READY) instead of starting new work.
        drain.enter()
        entered = True
        session = app[appkeys.SESSIONS].get(sid)
        if session is None:
            raise GameError(ErrorCode.AUTH_REQUIRED, "socket is not authenticated")
        if route.live_token and session.expires_at <= datetime.now(UTC):
            raise GameError(ErrorCode.TOKEN_EXPIRED, "access token expired; send auth:refresh")
        if route.limit_scope == "bets":
            # Bets are the heavy event: shed them first, before they cost Redis or database work.
            app[appkeys.LOOP_LAG].admit()
        _check_rate(app, route, session)
        payload = parse(route.schema, data)
        result = await route.handler(EventContext(app, session), payload)
        return {"ok": True, "data": result}
    except GameError as error:
        outcome = error.code.value
        metrics.ERRORS.labels(outcome).inc()
        return ack_error(error)
    except UNAVAILABLE as error:
        outcome = ErrorCode.NOT_READY.value
        if isinstance(error, redis.RedisError):
            metrics.REDIS_ERRORS.labels("events").inc()
        metrics.ERRORS.labels(outcome).inc()
        logger.warning(
            "event refused: dependency unavailable", exc_info=True, extra={"event": route.name}
        )
        return ack_error(not_ready())
    except Exception:
        outcome = ErrorCode.INTERNAL_ERROR.value
        metrics.ERRORS.labels(outcome).inc()
        logger.exception("event failed", extra={"event": route.name, "sid": sid})
        return ack_error(internal_error())
    finally:
        if entered:
            drain.leave()
        _count(route.name, outcome, time.perf_counter() - started)


# Labelled children looked up once: `labels()` takes a lock and builds a key on every call.
_event_counters: dict[tuple[str, str], Any] = {}
_event_latencies: dict[str, Any] = {}


def _count(event: str, outcome: str, seconds: float) -> None:
    counter = _event_counters.get((event, outcome))
    if counter is None:
        counter = _event_counters[event, outcome] = metrics.SOCKET_EVENTS.labels(event, outcome)
    counter.inc()
    latency = _event_latencies.get(event)
    if latency is None:
        latency = _event_latencies[event] = metrics.SOCKET_LATENCY.labels(event)
    latency.observe(seconds)


def _check_rate(app: web.Application, route: Route[Any], session: SocketSession) -> None:
    settings = app[appkeys.SETTINGS]
    limit, window = (
        settings.rate_limit_bets_per_user
        if route.limit_scope == "bets"
        else settings.rate_limit_events_per_user
    )
    wait_ms = app[appkeys.EVENT_LIMITER].hit(route.limit_scope, session.user_id, limit, window)
    if wait_ms:
        raise GameError(
            ErrorCode.RATE_LIMITED,
            f"too many {route.limit_scope}; retry in {wait_ms} ms",
            retryAfterMs=wait_ms,
        )
