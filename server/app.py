"""The app factory: `create_app(settings)` wires every resource in dependency order."""

from __future__ import annotations

import logging

import aiojobs.aiohttp
from aiohttp import web

from game.money import CENT
from game.rules import GameRules
from server.application.services import services_ctx
from server.auth.passwords import passwords_ctx
from server.auth.tokens import TOKENS, TokenService
from server.fanout.market_cache import market_cache_ctx
from server.fanout.pushes import pushes_ctx
from server.http import admin, apidocs, exposure, loadtest_limits, playground, rest, scrape
from server.mirror.runner import MIRROR, Mirror, feed_ctx
from server.runtime.local_limits import CONNECTION_LIMITS, EVENT_LIMITER, EventLimiter
from server.runtime.overload import loop_lag_ctx
from server.runtime.readiness import READINESS_CHECKS
from server.runtime.resources import database_ctx, redis_ctx
from server.settings import RULES, SETTINGS, Settings
from server.sockets.events import register_all as register_events
from server.sockets.presence import presence_ctx
from server.sockets.recovery import recovery_ctx
from server.sockets.router import EVENTS, EventRouter
from server.sockets.server import create_socket_server, socket_ctx
from server.sockets.sessions import SESSIONS, SocketSessions
from server.transport import drain, engineio_poll
from server.transport.admission import connection_admission
from server.transport.socketio_server import SIO
from server.transport.websocket import use_game_websocket
from server.wire.refusals import error_middleware

logger = logging.getLogger("thisthat.app")


def game_rules(settings: Settings) -> GameRules:
    # Credits as the ledger holds them, two decimals, so every amount the rules hand out or
    # quote is written the same way on the wire (docs/protocol.md, Basics).
    return GameRules(
        min_bet_amount=settings.min_bet_amount.quantize(CENT),
        max_bet_amount=settings.max_bet_amount.quantize(CENT),
        starting_credits=settings.starting_credits.quantize(CENT),
        daily_reward_credits=settings.daily_reward_credits.quantize(CENT),
        max_balance=settings.max_balance.quantize(CENT),
        odds_max_age_s=settings.odds_max_age_s,
    )


def create_app(settings: Settings) -> web.Application:
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError(
            "create_app needs DATABASE_URL and REDIS_URL; `thisthat serve` starts embedded ones"
        )
    exposure.hide_server_version()
    exposure.redact_unparsable_requests()
    app = web.Application(
        middlewares=[
            connection_admission,
            rest.cors_middleware,
            rest.metrics_middleware,
            error_middleware,
        ],
        client_max_size=64 * 1024,
    )
    app[SETTINGS] = settings
    app[RULES] = game_rules(settings)
    app[TOKENS] = TokenService(
        access_secret=settings.jwt_access_secret,
        refresh_secret=settings.jwt_refresh_secret,
        access_ttl_s=settings.jwt_access_expires_in,
        refresh_ttl_s=settings.jwt_refresh_expires_in,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    app[SESSIONS] = SocketSessions(settings.token_expiry_warning_s)
    app[EVENT_LIMITER] = EventLimiter(enabled=settings.rate_limit_enabled)
    app[CONNECTION_LIMITS] = EventLimiter(enabled=settings.rate_limit_enabled)
    # `thisthat serve` drains on SIGTERM (server/cli/startup.py) before the app shuts down.
    app[drain.DRAIN] = drain.Drain()
    app[READINESS_CHECKS] = {}
    app[MIRROR] = Mirror()
    app[scrape.SCRAPE_STATE] = scrape.ScrapeState()
    # Library patches and the game's events: explicit here, never a side effect of an import.
    engineio_poll.install()
    events = EventRouter()
    register_events(events)
    app[EVENTS] = events
    rest.add_routes(app)
    apidocs.add_routes(app, events)
    playground.add_routes(app)
    admin.add_routes(app)
    loadtest_limits.add_routes(app)

    # Teardown runs in reverse: sockets and jobs stop before Redis and the pool close.
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(passwords_ctx)
    aiojobs.aiohttp.setup(app, limit=None, close_timeout=5)
    sio = create_socket_server(app, settings.redis_url, events)
    use_game_websocket(sio, settings)
    sio.attach(app)
    app[SIO] = sio
    app.cleanup_ctx.append(socket_ctx)
    app.cleanup_ctx.append(loop_lag_ctx)
    app.cleanup_ctx.append(pushes_ctx)
    app.cleanup_ctx.append(recovery_ctx)
    app.cleanup_ctx.append(presence_ctx)
    app.cleanup_ctx.append(market_cache_ctx)
    # The use cases, their bet batch workers, and the finishing of settlements a dead process
    # left half done; needs the market cache and the pushes, precedes the feed.
    app.cleanup_ctx.append(services_ctx)
    app.cleanup_ctx.append(feed_ctx)
    app.cleanup_ctx.append(admin.admin_ctx)
    return app
