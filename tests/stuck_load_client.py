"""A load client process that never finishes: it connects, sends its share of the load and keeps
reporting, but never ships its result (as a process stuck after the load would), so the runner's
deadline can be tested. Importable by name: the runner starts its processes with spawn."""

from __future__ import annotations

import asyncio
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any

import uvloop

from loadtest.plan import LoadPlan
from loadtest.system import raise_open_file_limit
from loadtest.worker import LoadWorker, run_worker

STUCK_PROCESS = 1


class StuckWorker(LoadWorker):
    async def drain(self) -> None:
        await asyncio.Event().wait()


def second_process_never_finishes(
    plan: LoadPlan, results: Queue[dict[str, Any]], control: Connection
) -> None:
    if plan.process_index != STUCK_PROCESS:
        run_worker(plan, results, control)
        return
    raise_open_file_limit()
    uvloop.run(StuckWorker(plan, results, control).run())
