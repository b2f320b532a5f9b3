"""Who is behind each socket on this node, and when their access token runs out."""

from __future__ import annotations

import heapq
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from aiohttp import web

Deadline = Literal["expiring", "expired"]


@dataclass(slots=True)
class SocketSession:
    sid: str
    user_id: uuid.UUID
    username: str
    expires_at: datetime
    markets: set[str] = field(default_factory=set)  # subscribed market ids
    # Connection state recovery (server/sockets/recovery.py): the private session id of a client
    # that opted in, and which of its connections this is.
    pid: str | None = None
    generation: int = 0


class SocketSessions:
    """The sessions of this node's sockets, plus a heap of token deadlines for the sweeper.

    A refreshed token pushes new deadlines; old heap entries are recognised as stale because
    they no longer match the session's `expires_at`, so nothing has to be removed from the heap.
    """

    def __init__(self, warning_s: int) -> None:
        self._by_sid: dict[str, SocketSession] = {}
        self._users: Counter[uuid.UUID] = Counter()
        self._deadlines: list[tuple[datetime, str, datetime, Deadline]] = []
        self._warning = timedelta(seconds=warning_s)

    def __len__(self) -> int:
        return len(self._by_sid)

    def all(self) -> list[SocketSession]:
        return list(self._by_sid.values())

    @property
    def active_users(self) -> int:
        return len(self._users)

    def get(self, sid: str) -> SocketSession | None:
        return self._by_sid.get(sid)

    def sockets_of(self, user_id: uuid.UUID) -> int:
        return self._users.get(user_id, 0)

    def add(self, session: SocketSession) -> None:
        self._by_sid[session.sid] = session
        self._users[session.user_id] += 1
        self._schedule(session)

    def remove(self, sid: str) -> SocketSession | None:
        session = self._by_sid.pop(sid, None)
        if session is not None:
            self._users[session.user_id] -= 1
            if self._users[session.user_id] <= 0:
                del self._users[session.user_id]
        return session

    def renew(self, sid: str, expires_at: datetime) -> None:
        session = self._by_sid.get(sid)
        if session is not None:
            session.expires_at = expires_at
            self._schedule(session)

    def _schedule(self, session: SocketSession) -> None:
        heapq.heappush(
            self._deadlines,
            (session.expires_at - self._warning, session.sid, session.expires_at, "expiring"),
        )
        heapq.heappush(
            self._deadlines, (session.expires_at, session.sid, session.expires_at, "expired")
        )

    def due(self, now: datetime) -> list[tuple[SocketSession, Deadline]]:
        """Deadlines reached by `now` whose session still has the token they were set for."""
        reached: list[tuple[SocketSession, Deadline]] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, sid, expires_at, kind = heapq.heappop(self._deadlines)
            session = self._by_sid.get(sid)
            if session is not None and session.expires_at == expires_at:
                reached.append((session, kind))
        return reached


SESSIONS: Final = web.AppKey("sessions", SocketSessions)
