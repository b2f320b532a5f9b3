"""Load shedding: when the event loop falls behind, new bets are refused at once instead of queued.

Past its capacity an open-loop load (players who keep betting whatever the latency) would
otherwise grow every queue until every answer came too late to matter. The loop's lag (how
late a short sleep wakes, smoothed) says how far behind the server is; above the threshold a bet is
answered RATE_LIMITED with a retry hint before it costs Redis or database work, so the bets
that are accepted keep a bounded latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from game.errors import ServerBusy
from server import metrics
from server.jobs import spawn
from services import metrics as service_metrics

PROBE_INTERVAL_S = 0.05
LAG_LIMIT_S = 0.5
# Smoothing: one slow turn of the loop (a GC pause, a burst) is not overload; a sustained lag is.
SMOOTHING = 0.3
RETRY_AFTER_MS = 500


class LoopLag:
    def __init__(self, limit_s: float = LAG_LIMIT_S) -> None:
        self.limit_s = limit_s
        self.lag_s = 0.0
        self.shed = 0

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + PROBE_INTERVAL_S
            await asyncio.sleep(PROBE_INTERVAL_S)
            sample = max(0.0, loop.time() - expected)
            self.lag_s += SMOOTHING * (sample - self.lag_s)
            metrics.EVENT_LOOP_LAG.set(self.lag_s)

    def admit(self) -> None:
        """Raise RATE_LIMITED while the server is too far behind to answer in time."""
        if self.lag_s > self.limit_s:
            self.shed += 1
            service_metrics.BETS_SHED.inc()
            raise ServerBusy(RETRY_AFTER_MS)


async def loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    lag = LoopLag()
    app[LOOP_LAG] = lag
    job = await spawn(app, lag.watch(), name="loop-lag")
    yield
    await job.close()


LOOP_LAG: Final = web.AppKey("loop_lag", LoopLag)
