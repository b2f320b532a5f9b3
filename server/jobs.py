"""Background work goes through the app's aiojobs scheduler, so it is tracked and closed on shutdown."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import aiojobs
from aiohttp import web
from aiojobs.aiohttp import get_scheduler_from_app


async def spawn(app: web.Application, coro: Coroutine[Any, Any, Any], name: str | None = None) -> aiojobs.Job[Any]:
    scheduler = get_scheduler_from_app(app)
    assert scheduler is not None, "aiojobs is set up in create_app"
    return await scheduler.spawn(coro, name=name)
