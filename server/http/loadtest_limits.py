"""`GET /loadtest/limits`: the limits and credits a load plan runs into, so the load client
checks its plan against this server before it opens a socket (loadtest/preflight.py).

Off unless LOADTEST_LIMITS_ENDPOINT is true (then 404). Read like `/metrics`: with METRICS_TOKEN
set it needs `Authorization: Bearer <METRICS_TOKEN>` (wrong tokens counted per address); unset,
it is open outside production and answers 404 in production. The answer is built from a fixed
list of settings that holds no secret, the kind of feed (never its file or keys), whether
proxies are trusted (never which ones), and the address the caller's connections count against.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from game.errors import AuthRequired
from server.fanout.market_cache import MARKET_CACHE
from server.http import exposure
from server.http.rest import count_operator_token, json_response, presented_bearer
from server.settings import SETTINGS, Settings
from server.transport.client_address import client_ip

PATH: Final = "/loadtest/limits"

# The settings a load plan depends on, answered under their environment variable names. Never
# add one of server.settings.SECRETS (tests/unit/test_loadtest_limits.py checks).
PUBLISHED: Final = (
    "rate_limit_enabled",
    "rate_limit_connections_per_ip",
    "sockets_per_user",
    "socket_auth_timeout_s",
    "ws_frames_per_s",
    "ws_frames_burst",
    "rate_limit_events_per_user",
    "rate_limit_bets_per_user",
    "rate_limit_signup_per_ip",
    "rate_limit_login_per_ip",
    "rate_limit_login_per_username_ip",
    "rate_limit_login_per_username",
    "rate_limit_refresh_per_ip",
    "min_bet_amount",
    "max_bet_amount",
    "starting_credits",
    "daily_reward_credits",
    "max_balance",
    "odds_max_age_s",
    "bet_queue_target_ms",
    "bet_queue_deadline_ms",
    "jwt_access_expires_in",
    "feed_replay_loop",
)


def published_settings(settings: Settings) -> dict[str, Any]:
    """PUBLISHED as the environment spells them: rate limits as `count/window`, money as JSON
    numbers, durations in seconds."""
    answer: dict[str, Any] = {}
    for name in PUBLISHED:
        value = getattr(settings, name)
        if name.startswith("rate_limit_") and isinstance(value, tuple):
            value = f"{value[0]}/{value[1]}"
        answer[name.upper()] = value
    return answer


async def _readable(request: web.Request, settings: Settings) -> bool:
    allowed = exposure.sees_operator_detail(request)
    if settings.metrics_token and presented_bearer(request) is not None:
        await count_operator_token(request, allowed)
    return allowed


async def loadtest_limits(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if not settings.loadtest_limits_endpoint:
        raise web.HTTPNotFound()
    if not await _readable(request, settings):
        if not settings.metrics_token:
            raise web.HTTPNotFound()
        raise AuthRequired("send Authorization: Bearer <METRICS_TOKEN>")
    return json_response(
        {
            "settings": published_settings(settings),
            "feed": settings.feed.partition(":")[0],
            "openMarkets": len(request.app[MARKET_CACHE].open_rows()),
            "trustedProxies": bool(settings.trusted_proxies),
            "clientAddress": client_ip(request),
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, loadtest_limits)
