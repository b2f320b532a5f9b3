"""A background job closes even when its first cancel is swallowed, as a cancel landing while a
library's own timeout fires can be in Python 3.11 (the task's cancel count reset with it)."""

from __future__ import annotations

import asyncio

import pytest

from server.runtime import jobs
from server.runtime.jobs import Job


async def test_a_job_whose_first_cancel_is_swallowed_is_cancelled_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs, "CLOSE_WAIT_S", 0.05)
    swallowed = 0

    async def loop_that_loses_a_cancel() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1
                task = asyncio.current_task()
                assert task is not None
                task.uncancel()  # what a library's timeout does with a cancel it took for its own

    job = Job()
    task = asyncio.create_task(job._run(loop_that_loses_a_cancel()))
    await asyncio.sleep(0)
    await asyncio.wait_for(job.close(), 2)
    assert swallowed == 1 and task.cancelled()
