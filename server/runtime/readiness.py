"""Readiness checks beyond the database and Redis, added by the rooms that own them (the mirror
adds the feed's); `/readyz` asks each one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

# A check answers (healthy, detail).
ReadinessCheck = Callable[[web.Application], Awaitable[tuple[bool, Any]]]
READINESS_CHECKS: Final = web.AppKey("readiness_checks", dict[str, ReadinessCheck])
