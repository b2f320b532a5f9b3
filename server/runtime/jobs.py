"""Background work goes through the app's aiojobs scheduler, so it is tracked and closed on shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import aiojobs
from aiohttp import web
from aiojobs.aiohttp import get_scheduler_from_app


async def spawn(
    app: web.Application, coro: Coroutine[Any, Any, Any], name: str | None = None
) -> aiojobs.Job[Any]:
    scheduler = get_scheduler_from_app(app)
    assert scheduler is not None, "aiojobs is set up in create_app"
    return await scheduler.spawn(coro, name=name)


def stop_if_cancelled() -> None:
    """Call in a broad `except Exception` of a long-running loop.

    In Python 3.11 a cancel that lands while a library's own timeout fires can come out as a
    TimeoutError (or an error wrapping it); swallowing that would leave the loop running after
    shutdown asked it to stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
