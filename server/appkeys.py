"""Typed application state: every resource the app holds, one key each."""

from __future__ import annotations

import asyncpg
import redis.asyncio as redis
import socketio
from aiohttp import web

from game.rules import GameRules
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
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
REDIS = web.AppKey("redis", redis.Redis)
SIO = web.AppKey("sio", socketio.AsyncServer)
TOKENS = web.AppKey("tokens", TokenService)
PASSWORDS = web.AppKey("passwords", PasswordHasher)
LIMITER = web.AppKey("limiter", RateLimiter)
EVENT_LIMITER = web.AppKey("event_limiter", EventLimiter)
SESSIONS = web.AppKey("sessions", SocketSessions)
MARKET_CACHE = web.AppKey("market_cache", MarketCache)
PUSHES = web.AppKey("pushes", Pushes)
LOOP_LAG = web.AppKey("loop_lag", LoopLag)
