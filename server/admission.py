"""Admission of bets by the age of the queued work, so goodput holds past capacity.

Past its capacity an open-loop load (players who bet whatever the latency) grows the bet queue
until every answer comes after the client gave up, while the event loop itself stays prompt.
So the queue's own delay decides, in the manner of CoDel: when bets have waited longer than
`target_s` at dequeue for a whole `interval_s`, new bets are refused at once (RATE_LIMITED with
a retry hint) until a dequeue sees the queue fast again; and a bet that has waited past
`deadline_s` is refused without being written, because its client has likely given up on it.
Either way a bet is written and acked ok, or refused and not written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from game.errors import ErrorCode, GameError
from server import metrics


def busy(retry_after_ms: int) -> GameError:
    return GameError(
        ErrorCode.RATE_LIMITED, "the server is busy; retry shortly", retryAfterMs=retry_after_ms
    )


@dataclass
class QueueAdmission:
    target_s: float = 0.05
    interval_s: float = 0.1
    deadline_s: float = 2.0
    retry_after_ms: int = 250
    overloaded: bool = False
    refused: int = 0
    expired: int = 0
    _above_since: float | None = field(default=None, repr=False)
    _confirmed_at: float = field(default=0.0, repr=False)  # last dequeue that found it slow

    def admit(self, now: float) -> None:
        """Raise RATE_LIMITED at once while the queue is known to be slow.

        Only a dequeue can tell that the queue is fast again, and a refused bet never queues; so
        once `interval_s` passes with no dequeue confirming the slowness, bets go in again and the
        first one dequeued decides. Otherwise a queue that drained while overloaded would refuse
        every bet until the node restarts.
        """
        if self.overloaded and now - self._confirmed_at < self.interval_s:
            self.refused += 1
            metrics.BETS_SHED.inc()
            raise busy(self.retry_after_ms)

    def dequeued(self, waited_s: float, now: float) -> None:
        """Called for the head of each batch: how long it waited decides the state."""
        if waited_s <= self.target_s:
            self._above_since = None
            self.overloaded = False
            return
        if self._above_since is None:
            self._above_since = now
        elif now - self._above_since >= self.interval_s:
            self.overloaded = True
            self._confirmed_at = now

    def expired_bet(self, waited_s: float) -> GameError | None:
        """The refusal for a bet that waited past the deadline, else None."""
        if waited_s <= self.deadline_s:
            return None
        self.expired += 1
        metrics.BETS_SHED.inc()
        return busy(self.retry_after_ms)
