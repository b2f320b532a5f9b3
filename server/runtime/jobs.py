"""Background work goes through the app's aiojobs scheduler, so it is tracked and closed on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Final

import aiojobs
from aiohttp import web
from aiojobs.aiohttp import get_scheduler_from_app

# Closing a job: the cancel is sent again if the job is still running after each wait.
CLOSE_ATTEMPTS: Final = 5
CLOSE_WAIT_S: Final = 1.0

logger = logging.getLogger("thisthat.jobs")


class Job:
    """A background job of the app, run by its aiojobs scheduler.

    `close` cancels it and waits, and cancels it again while it still runs: in Python 3.11 a
    cancel that lands while a library's own timeout fires (a Redis call's) can be swallowed
    whole, the task's cancel count reset, so that even `stop_if_cancelled` does not see it, and
    a loop would go on after shutdown asked it to stop.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[Any] | None = None
        self._inner: aiojobs.Job[Any] | None = None

    async def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        self._task = asyncio.current_task()
        return await coro

    async def close(self) -> None:
        task = self._task
        if task is not None:
            for _ in range(CLOSE_ATTEMPTS):
                if task.done():
                    break
                task.cancel()
                await asyncio.wait([task], timeout=CLOSE_WAIT_S)
            if not task.done():
                logger.warning("a background job did not stop", extra={"job": task.get_name()})
        if self._inner is not None:
            await self._inner.close()


async def spawn(
    app: web.Application, coro: Coroutine[Any, Any, Any], name: str | None = None
) -> Job:
    scheduler = get_scheduler_from_app(app)
    assert scheduler is not None, "aiojobs is set up in create_app"
    job = Job()
    job._inner = await scheduler.spawn(job._run(coro), name=name)
    return job


def stop_if_cancelled() -> None:
    """Call in a broad `except Exception` of a long-running loop.

    In Python 3.11 a cancel that lands while a library's own timeout fires can come out as a
    TimeoutError (or an error wrapping it); swallowing that would leave the loop running after
    shutdown asked it to stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
