"""Per-user socket event limits counted in the node's memory: fixed windows, per scope."""

from __future__ import annotations

from server.runtime.local_limits import EventLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def limiter() -> tuple[EventLimiter, Clock]:
    clock = Clock()
    made = EventLimiter()
    made._now = clock
    return made, clock


def test_hits_within_the_limit_pass_and_the_next_waits_for_the_window() -> None:
    limits, clock = limiter()
    assert [limits.hit("events", "u1", 3, 1) for _ in range(3)] == [0, 0, 0]
    clock.now += 0.25
    assert limits.hit("events", "u1", 3, 1) == 750


def test_a_new_window_opens_after_the_old_one_ends() -> None:
    limits, clock = limiter()
    for _ in range(4):
        limits.hit("bets", "u1", 3, 1)
    clock.now += 1.0
    assert limits.hit("bets", "u1", 3, 1) == 0


def test_users_and_scopes_are_counted_apart() -> None:
    limits, _ = limiter()
    assert limits.hit("bets", "u1", 1, 1) == 0
    assert limits.hit("bets", "u2", 1, 1) == 0
    assert limits.hit("events", "u1", 1, 1) == 0
    assert limits.hit("bets", "u1", 1, 1) > 0


def test_ended_windows_are_swept_so_memory_stays_bounded() -> None:
    limits, clock = limiter()
    for user in range(100):
        limits.hit("events", user, 5, 1)
    clock.now += 30
    limits.hit("events", "late", 5, 1)
    assert len(limits) == 1


def test_disabled_limits_always_pass() -> None:
    limits = EventLimiter(enabled=False)
    assert all(limits.hit("bets", "u1", 1, 1) == 0 for _ in range(10))
