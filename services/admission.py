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

from game.errors import ServerBusy
from services import metrics


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

    def admit(self) -> None:
        """Raise RATE_LIMITED at once while the queue is known to be slow."""
        if self.overloaded:
            self.refused += 1
            metrics.BETS_SHED.inc()
            raise ServerBusy(self.retry_after_ms)

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

    def expired_bet(self, waited_s: float) -> ServerBusy | None:
        """The refusal for a bet that waited past the deadline, else None."""
        if waited_s <= self.deadline_s:
            return None
        self.expired += 1
        metrics.BETS_SHED.inc()
        return ServerBusy(self.retry_after_ms)
