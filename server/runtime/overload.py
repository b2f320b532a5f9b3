"""Load shedding: when the event loop falls behind, new bets are refused at once instead of queued.

Two places refuse. At the edge (server/transport/websocket.py), a `bet:place` frame is answered busy before
Socket.IO decodes it while the bet queue is backlogged (services/betting.py: its oldest bet has
waited past the target), and otherwise for a fraction of bets that tracks the lag: the fraction
let in shrinks by a factor while the loop is late and grows back by steps while it is prompt
(AIMD). So past capacity the node spends its time on the bets it can place, not on refusing the
rest slowly: a refusal there costs a fraction of a decoded event, which is what keeps goodput up
when far more bets arrive than the node can place. Behind it, the router refuses every bet while
the lag is past the hard limit.

Past its capacity an open-loop load (players who keep betting whatever the latency) would
otherwise grow every queue until every answer came too late to matter. The loop's lag (how
late a short sleep wakes, smoothed) says how far behind the server is; above the threshold a bet is
answered RATE_LIMITED with a retry hint before it costs Redis or database work, so the bets
that are accepted keep a bounded latency.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Final

from aiohttp import web

from game.errors import ServerBusy
from server.runtime import metrics
from server.runtime.jobs import spawn
from services import metrics as service_metrics

PROBE_INTERVAL_S = 0.05
LAG_LIMIT_S = 0.5
# Smoothing: one slow turn of the loop (a GC pause, a burst) is not overload; a sustained lag is.
SMOOTHING = 0.3
RETRY_AFTER_MS = 500
# The edge lets in fewer bets while the smoothed lag is above this, more while below.
EDGE_TARGET_S = 0.05
EDGE_DECREASE = 0.7
EDGE_INCREASE = 0.05
EDGE_MIN_FRACTION = 0.02


def _never() -> bool:
    return False


class LoopLag:
    def __init__(self, limit_s: float = LAG_LIMIT_S) -> None:
        self.limit_s = limit_s
        self.lag_s = 0.0
        self.shed = 0
        # Share of bets the edge lets through to the game (1.0 while the loop is prompt).
        self.admitted_fraction = 1.0
        # Whether the bet queue would refuse a new bet now; the app points it at the batcher.
        self.queue_backlogged: Callable[[], bool] = _never

    def sheds_some(self) -> bool:
        """Whether the edge may refuse bets now (else it need not look at frames at all)."""
        return self.admitted_fraction < 1.0 or self.queue_backlogged()

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + PROBE_INTERVAL_S
            await asyncio.sleep(PROBE_INTERVAL_S)
            sample = max(0.0, loop.time() - expected)
            self.lag_s += SMOOTHING * (sample - self.lag_s)
            metrics.EVENT_LOOP_LAG.set(self.lag_s)
            self.adjust()

    def adjust(self) -> None:
        if self.lag_s > EDGE_TARGET_S:
            self.admitted_fraction = max(EDGE_MIN_FRACTION, self.admitted_fraction * EDGE_DECREASE)
        else:
            self.admitted_fraction = min(1.0, self.admitted_fraction + EDGE_INCREASE)

    def sheds_at_edge(self) -> bool:
        """Whether the edge should refuse this bet: the bet queue is backlogged, or at random at
        the current admitted share."""
        if self.queue_backlogged():
            self.shed += 1
            service_metrics.BETS_SHED.inc()
            return True
        if self.admitted_fraction >= 1.0:
            return False
        if random.random() < self.admitted_fraction:  # noqa: S311 - sampling, not security
            return False
        self.shed += 1
        service_metrics.BETS_SHED.inc()
        return True

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
