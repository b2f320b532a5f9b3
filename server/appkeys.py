"""Typed application state: every resource the app holds, one key each."""

from __future__ import annotations

import asyncpg
import redis.asyncio as redis
import socketio
from aiohttp import web

from game.rules import GameRules
from server.bet_batcher import BetBatcher
from server.event_limits import EventLimiter
from server.market_cache import MarketCache
from server.overload import LoopLag
from server.passwords import PasswordHasher
from server.pushes import Pushes
from server.sessions import SocketSessions
from server.settings import Settings
from server.tokens import TokenService
from storage.ratelimit import RateLimiter

SETTINGS = web.AppKey("settings", Settings)
RULES = web.AppKey("rules", GameRules)
SERVICE_URLS = web.AppKey("service_urls", tuple)  # (database_url, redis_url) actually in use
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
REDIS = web.AppKey("redis", redis.Redis)
SIO = web.AppKey("sio", socketio.AsyncServer)
TOKENS = web.AppKey("tokens", TokenService)
PASSWORDS = web.AppKey("passwords", PasswordHasher)
LIMITER = web.AppKey("limiter", RateLimiter)
EVENT_LIMITER = web.AppKey("event_limiter", EventLimiter)
SESSIONS = web.AppKey("sessions", SocketSessions)
MARKET_CACHE = web.AppKey("market_cache", MarketCache)
# Periods with a trailing `leaderboard:update` push scheduled on this node (server.leaderboard_push).
LEADERBOARD_TRAILING = web.AppKey("leaderboard_trailing", set)
BET_BATCHER = web.AppKey("bet_batcher", BetBatcher)
PUSHES = web.AppKey("pushes", Pushes)
LOOP_LAG = web.AppKey("loop_lag", LoopLag)
