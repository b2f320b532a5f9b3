"""The app factory: `create_app(settings)` wires every resource in dependency order."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiojobs.aiohttp
import redis.asyncio as redis
from aiohttp import web

import server.events  # noqa: F401 - registers every socket event handler
from game.rules import GameRules
from server import admin, apidocs, appkeys, exposure, metrics, playground, rest, scrape
from server.bet_batcher import bet_batcher_ctx
from server.errors import error_middleware
from server.event_limits import EventLimiter
from server.feed import feed_ctx
from server.market_cache import market_cache_ctx
from server.overload import loop_lag_ctx
from server.passwords import PasswordHasher
from server.pushes import pushes_ctx
from server.realtime import create_socket_server, socket_ctx
from server.router import router
from server.sessions import SocketSessions
from server.settings import Settings
from server.settlement import settlement_ctx
from server.tokens import TokenService
from storage import database
from storage.ratelimit import LoginGuard, RateLimiter

logger = logging.getLogger("thisthat.app")


def game_rules(settings: Settings) -> GameRules:
    return GameRules(
        min_bet_amount=settings.min_bet_amount,
        max_bet_amount=settings.max_bet_amount,
        starting_credits=settings.starting_credits,
        daily_reward_credits=settings.daily_reward_credits,
        max_balance=settings.max_balance,
        odds_max_age_s=settings.odds_max_age_s,
    )


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    assert settings.database_url is not None
    # Every node applies migrations on start; the runner's lock makes that safe.
    await database.migrate(settings.database_url)
    pool = await database.create_pool(
        settings.database_url,
        max_size=settings.database_pool_max,
        on_query=metrics.DB_QUERY_SECONDS.observe,
    )
    app[appkeys.DB_POOL] = pool
    yield
    await pool.close()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    assert settings.redis_url is not None
    # A bounded pool of warm connections: a burst waits for one instead of opening more.
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=32,
        timeout=5,
        decode_responses=True,
        health_check_interval=30,
    )
    client = redis.Redis(connection_pool=pool)
    await client.ping()
    app[appkeys.REDIS] = client
    app[appkeys.LIMITER] = RateLimiter(client, enabled=settings.rate_limit_enabled)
    app[rest.LOGIN_GUARD] = LoginGuard(
        client,
        pair=settings.rate_limit_login_per_username_ip,
        ceiling=settings.rate_limit_login_per_username,
        enabled=settings.rate_limit_enabled,
    )
    yield
    await client.aclose()
    await pool.aclose()  # the client does not close a pool it was given


async def passwords_ctx(app: web.Application) -> AsyncIterator[None]:
    hasher = PasswordHasher(app[appkeys.SETTINGS].bcrypt_cost)
    app[appkeys.PASSWORDS] = hasher
    yield
    hasher.close()


def create_app(settings: Settings) -> web.Application:
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError(
            "create_app needs DATABASE_URL and REDIS_URL; `thisthat serve` starts embedded ones"
        )
    exposure.hide_server_version()
    exposure.redact_unparsable_requests()
    app = web.Application(
        middlewares=[rest.cors_middleware, rest.metrics_middleware, error_middleware],
        client_max_size=64 * 1024,
    )
    app[appkeys.SETTINGS] = settings
    app[appkeys.RULES] = game_rules(settings)
    app[appkeys.TOKENS] = TokenService(
        access_secret=settings.jwt_access_secret,
        refresh_secret=settings.jwt_refresh_secret,
        access_ttl_s=settings.jwt_access_expires_in,
        refresh_ttl_s=settings.jwt_refresh_expires_in,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    app[appkeys.SESSIONS] = SocketSessions(settings.token_expiry_warning_s)
    app[appkeys.EVENT_LIMITER] = EventLimiter(enabled=settings.rate_limit_enabled)
    app[rest.READINESS_CHECKS] = {}
    app[appkeys.LEADERBOARD_TRAILING] = set()
    app[scrape.SCRAPE_STATE] = scrape.ScrapeState()
    rest.add_routes(app)
    apidocs.add_routes(app, router)
    playground.add_routes(app)
    admin.add_routes(app)

    # Teardown runs in reverse: sockets and jobs stop before Redis and the pool close.
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(passwords_ctx)
    aiojobs.aiohttp.setup(app, limit=None, close_timeout=5)
    sio = create_socket_server(app, settings.redis_url)
    sio.attach(app)
    app[appkeys.SIO] = sio
    app.cleanup_ctx.append(socket_ctx)
    app.cleanup_ctx.append(loop_lag_ctx)
    app.cleanup_ctx.append(pushes_ctx)
    app.cleanup_ctx.append(market_cache_ctx)
    app.cleanup_ctx.append(bet_batcher_ctx)
    # Finishes settlements a dead process left half done; needs the market cache, precedes the feed.
    app.cleanup_ctx.append(settlement_ctx)
    app.cleanup_ctx.append(feed_ctx)
    app.cleanup_ctx.append(admin.admin_ctx)
    return app
