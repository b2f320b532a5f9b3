"""Bets admitted by the age of the queued work: a slow queue refuses new bets at once, and a bet
that waited past the deadline is refused, never written late."""

from __future__ import annotations

import pytest

from game.errors import ErrorCode, GameError
from server.admission import QueueAdmission


def test_a_fast_queue_admits_everything() -> None:
    admission = QueueAdmission(target_s=0.05, interval_s=0.1)
    for step in range(10):
        admission.dequeued(0.01, now=step * 0.05)
        admission.admit(now=step * 0.05)
    assert not admission.overloaded and admission.refused == 0


def test_one_slow_dequeue_is_not_overload() -> None:
    admission = QueueAdmission(target_s=0.05, interval_s=0.1)
    admission.dequeued(0.4, now=1.0)
    admission.admit(now=1.0)
    assert not admission.overloaded


def test_a_queue_slow_for_the_whole_interval_refuses_new_bets_with_a_retry_hint() -> None:
    admission = QueueAdmission(target_s=0.05, interval_s=0.1, retry_after_ms=250)
    admission.dequeued(0.2, now=1.0)
    admission.dequeued(0.2, now=1.05)
    assert not admission.overloaded
    admission.dequeued(0.2, now=1.1)
    assert admission.overloaded
    with pytest.raises(GameError) as refused:
        admission.admit(now=1.15)
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert refused.value.details["retryAfterMs"] == 250


def test_a_fast_dequeue_ends_the_overload() -> None:
    admission = QueueAdmission(target_s=0.05, interval_s=0.1)
    admission.dequeued(0.2, now=1.0)
    admission.dequeued(0.2, now=1.2)
    assert admission.overloaded
    admission.dequeued(0.01, now=1.3)
    assert not admission.overloaded
    admission.admit(now=1.3)


def test_an_overload_no_dequeue_confirms_lets_bets_in_after_an_interval() -> None:
    """Refused bets never queue: a drained queue cannot say it is fast, so the overload lapses."""
    admission = QueueAdmission(target_s=0.05, interval_s=0.1)
    admission.dequeued(0.2, now=1.0)
    admission.dequeued(0.2, now=1.2)
    assert admission.overloaded
    with pytest.raises(GameError):
        admission.admit(now=1.25)
    admission.admit(now=1.35)  # no dequeue confirmed the overload for an interval: a probe
    admission.dequeued(0.2, now=1.4)  # the probe found it slow again
    with pytest.raises(GameError):
        admission.admit(now=1.45)


def test_a_bet_past_the_deadline_gets_a_refusal_and_one_within_it_none() -> None:
    admission = QueueAdmission(deadline_s=2.0)
    assert admission.expired_bet(1.9) is None
    refusal = admission.expired_bet(2.5)
    assert refusal is not None and refusal.code is ErrorCode.RATE_LIMITED
    assert admission.expired == 1
