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
from typing import Any, Final, Generic, TypeVar

from aiohttp import web

from game.errors import AuthRequired, RateLimited, TokenExpired, ValidationFailed
from server.runtime import metrics
from server.runtime.local_limits import EVENT_LIMITER
from server.runtime.overload import LOOP_LAG
from server.settings import SETTINGS
from server.sockets.sessions import SESSIONS, SocketSession
from server.transport.drain import DRAIN
from server.wire.refusals import ack_error, refusal_for
from server.wire.schemas import Payload, parse

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
    # Looked up before a rate or load refusal, which promises "not done": a repeat of an event
    # already done gets its answer instead.
    repeat: Repeat[P] | None = None


# The answer an event already got, found again for a repeat of it (a bet's clientBetId), or None.
Repeat = Callable[[EventContext, P], Awaitable[dict[str, Any] | None]]

# A part of the game adds its share of the `sync` answer (open bets, subscribed markets).
SyncPart = Callable[[EventContext], Awaitable[dict[str, Any]]]


class EventRouter:
    """The events this server answers, filled by each part's `register` in create_app."""

    def __init__(self) -> None:
        self.routes: dict[str, Route[Any]] = {}
        self.sync_parts: list[SyncPart] = []

    def add(
        self,
        name: str,
        schema: type[P],
        handler: Handler[P],
        *,
        limit_scope: str = "events",
        live_token: bool = True,
        repeat: Repeat[P] | None = None,
    ) -> None:
        if name in self.routes:
            raise ValueError(f"event {name!r} registered twice")
        self.routes[name] = Route(name, schema, handler, limit_scope, live_token, repeat)

    def add_sync_part(self, part: SyncPart) -> None:
        self.sync_parts.append(part)


EVENTS: Final = web.AppKey("events", EventRouter)


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
        session = app[SESSIONS].get(sid)
        if session is None:
            raise AuthRequired("socket is not authenticated")
        if route.live_token and session.expires_at <= datetime.now(UTC):
            raise TokenExpired("access token expired; send auth:refresh")
        context = EventContext(app, session)
        try:
            if route.limit_scope == "bets":
                # Bets are the heavy event: shed them first, before they cost Redis or database work.
                app[LOOP_LAG].admit()
            _check_rate(app, route, session)
        except RateLimited:
            answer = await _answer_of_repeat(route, context, data)
            if answer is None:
                raise
            return {"ok": True, "data": answer}
        payload = parse(route.schema, data)
        result = await route.handler(context, payload)
        return {"ok": True, "data": result}
    except Exception as error:  # noqa: BLE001 - every error becomes a refusal (logged if unknown)
        refusal = refusal_for(error, "events", event=route.name, sid=sid)
        if not entered and drain.draining:
            drain.refused(sid)
        outcome = refusal.code.value
        metrics.ERRORS.labels(outcome).inc()
        return ack_error(refusal)
    finally:
        if entered:
            drain.leave()
        _count(route.name, outcome, time.perf_counter() - started)


async def _answer_of_repeat(
    route: Route[Any], context: EventContext, data: object
) -> dict[str, Any] | None:
    """The answer of the event `data` repeats, if it was done already, else None (then the
    refusal stands; so it does for a payload that does not parse)."""
    if route.repeat is None:
        return None
    try:
        payload = parse(route.schema, data)
    except ValidationFailed:
        return None
    return await route.repeat(context, payload)


def _count(event: str, outcome: str, seconds: float) -> None:
    metrics.SOCKET_EVENT_STATS.record(event, outcome, seconds)


def _check_rate(app: web.Application, route: Route[Any], session: SocketSession) -> None:
    settings = app[SETTINGS]
    limit, window = (
        settings.rate_limit_bets_per_user
        if route.limit_scope == "bets"
        else settings.rate_limit_events_per_user
    )
    wait_ms = app[EVENT_LIMITER].hit(route.limit_scope, session.user_id, limit, window)
    if wait_ms:
        raise RateLimited(f"too many {route.limit_scope}; retry in {wait_ms} ms", wait_ms)
