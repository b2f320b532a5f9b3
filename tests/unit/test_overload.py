"""Load shedding refuses bets only while the loop is behind."""

from __future__ import annotations

import pytest

from game.errors import ErrorCode, GameError
from server.runtime.overload import LoopLag


def test_a_server_within_its_lag_limit_admits() -> None:
    lag = LoopLag(limit_s=0.5)
    lag.lag_s = 0.1
    lag.admit()
    assert lag.shed == 0


def test_a_server_behind_refuses_with_a_retry_hint() -> None:
    lag = LoopLag(limit_s=0.5)
    lag.lag_s = 0.7
    with pytest.raises(GameError) as refused:
        lag.admit()
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert refused.value.details["retryAfterMs"] > 0
    assert lag.shed == 1


async def test_the_watcher_measures_a_blocked_loop() -> None:
    import asyncio
    import time

    lag = LoopLag()
    watcher = asyncio.create_task(lag.watch())
    await asyncio.sleep(0.06)
    for _ in range(8):  # a sustained lag, not one slow turn
        time.sleep(0.3)  # noqa: ASYNC251 - blocking the loop on purpose: the watcher must wake late
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert lag.lag_s > 0.2
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)


def test_the_edge_lets_fewer_bets_in_while_the_loop_is_late_and_recovers_after() -> None:
    lag = LoopLag()
    lag.lag_s = 0.3
    for _ in range(5):
        lag.adjust()
    late_share = lag.admitted_fraction
    assert late_share < 0.2
    lag.lag_s = 0.0
    for _ in range(30):
        lag.adjust()
    assert lag.admitted_fraction == 1.0


def test_a_prompt_loop_sheds_nothing_at_the_edge() -> None:
    lag = LoopLag()
    assert not any(lag.sheds_at_edge() for _ in range(1000))


def test_the_edge_sheds_about_the_share_it_does_not_admit() -> None:
    lag = LoopLag()
    lag.admitted_fraction = 0.25
    shed = sum(lag.sheds_at_edge() for _ in range(4000))
    assert 2500 < shed < 3500


def test_a_backlogged_bet_queue_sheds_every_bet_at_the_edge_even_with_a_prompt_loop() -> None:
    lag = LoopLag()
    backlogged = [True]
    lag.queue_backlogged = lambda: backlogged[0]
    assert lag.admitted_fraction == 1.0
    assert lag.sheds_some()
    assert all(lag.sheds_at_edge() for _ in range(100))
    backlogged[0] = False
    assert not lag.sheds_some()
    assert not any(lag.sheds_at_edge() for _ in range(100))
    assert lag.shed == 100
