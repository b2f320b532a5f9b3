"""Per-user limits on socket events, counted in this node's memory.

A socket event is the hot path: asking Redis for every one cost a round trip (and a syscall on
each side) per event. Sockets stay on the node they connected to, so a user's events are
counted where they arrive; a user with sockets on several nodes gets the limit on each, which
the per-user socket cap bounds. Limits that must hold across nodes whatever the client does
(signup, login, refresh, per address or username) stay in Redis (storage/ratelimit.py).
"""

from __future__ import annotations

import math
import time
from typing import Final

from aiohttp import web

SWEEP_INTERVAL_S: Final = 10.0


class EventLimiter:
    """Fixed windows per (scope, user), like the Redis limiter: the first hit opens the window."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._now = time.monotonic
        # (scope, subject) -> [window end, hits in the window]
        self._windows: dict[tuple[str, object], list[float]] = {}
        self._next_sweep = 0.0

    def hit(self, scope: str, subject: object, limit: int, window_s: float) -> int:
        """Count one event; 0 if allowed, else milliseconds until the window reopens."""
        if not self.enabled:
            return 0
        now = self._now()
        if now >= self._next_sweep:
            self._sweep(now)
        key = (scope, subject)
        window = self._windows.get(key)
        if window is None or now >= window[0]:
            window = [now + window_s, 0.0]
            self._windows[key] = window
        window[1] += 1
        if window[1] > limit:
            return max(1, int((window[0] - now) * 1000))
        return 0

    def fill(self, scope: str, subject: object, window_s: float) -> None:
        """Use up the subject's window for `window_s` from now: every hit until then is refused."""
        if self.enabled:
            self._windows[(scope, subject)] = [self._now() + window_s, math.inf]

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_INTERVAL_S
        for key in [key for key, window in self._windows.items() if now >= window[0]]:
            del self._windows[key]

    def __len__(self) -> int:
        return len(self._windows)


# Per-user socket event limits (server/sockets/router.py) and the per-address cap on new
# connections (server/transport/admission.py): two counters of this node.
EVENT_LIMITER: Final = web.AppKey("event_limiter", EventLimiter)
CONNECTION_LIMITS: Final = web.AppKey("connection_limits", EventLimiter)
