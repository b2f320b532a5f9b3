"""Bets admitted by the age of the queued work: a queue whose oldest bet waited past the target
refuses new bets at once, and a bet that waited past the deadline is refused, never written
late."""

from __future__ import annotations

import pytest

from game.errors import ErrorCode, GameError
from services.betting import QueueAdmission


def test_a_young_queue_admits_everything() -> None:
    admission = QueueAdmission(target_s=0.05)
    for oldest in (0.0, 0.01, 0.05):
        admission.admit(oldest_wait_s=oldest)
    assert admission.refused == 0


def test_a_queue_whose_oldest_bet_waited_past_the_target_refuses_with_a_retry_hint() -> None:
    admission = QueueAdmission(target_s=0.05, retry_after_ms=250)
    with pytest.raises(GameError) as refused:
        admission.admit(oldest_wait_s=0.051)
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert refused.value.details["retryAfterMs"] == 250
    assert admission.refused == 1


def test_a_queue_drained_since_admits_again_with_no_state_to_reset() -> None:
    admission = QueueAdmission(target_s=0.05)
    with pytest.raises(GameError):
        admission.admit(oldest_wait_s=0.3)
    admission.admit(oldest_wait_s=0.0)
    assert admission.refused == 1


def test_a_bet_past_the_deadline_gets_a_refusal_and_one_within_it_none() -> None:
    admission = QueueAdmission(deadline_s=2.0)
    assert admission.expired_bet(1.9) is None
    refusal = admission.expired_bet(2.5)
    assert refusal is not None and refusal.code is ErrorCode.RATE_LIMITED
    assert admission.expired == 1
