"""Who is behind each socket on this node, which markets they watch, and when their access token
runs out."""

from __future__ import annotations

import heapq
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from aiohttp import web

from services.presence import ONLINE

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


class PresenceTally:
    """Who is on this node, for presence (services/presence.py): per market, how many of each
    user's sockets are subscribed to it, and what changed since presence last looked."""

    def __init__(self, users: Counter[uuid.UUID]) -> None:
        self._users = users  # the sessions' own count of sockets per user
        self._watching: dict[str, Counter[str]] = {}
        self._changes: dict[str, dict[str, bool]] = {}

    def watch(self, user_id: str, market_id: str) -> None:
        sockets = self._watching.setdefault(market_id, Counter())
        sockets[user_id] += 1
        if sockets[user_id] == 1:
            self._changes.setdefault(market_id, {})[user_id] = True

    def unwatch(self, user_id: str, market_id: str) -> None:
        sockets = self._watching.get(market_id)
        if sockets is None or user_id not in sockets:
            return
        sockets[user_id] -= 1
        if sockets[user_id] <= 0:
            del sockets[user_id]
            self._changes.setdefault(market_id, {})[user_id] = False
            if not sockets:
                del self._watching[market_id]

    def came_or_went(self, user_id: str, here: bool) -> None:
        self._changes.setdefault(ONLINE, {})[user_id] = here

    def take_changes(self) -> dict[str, dict[str, bool]]:
        changes, self._changes = self._changes, {}
        return changes

    def markets(self) -> Collection[str]:
        return list(self._watching)

    def watchers(self, market_id: str) -> Collection[str]:
        return list(self._watching.get(market_id, ()))

    def watches(self, user_id: str, market_id: str) -> bool:
        return user_id in self._watching.get(market_id, ())

    def online(self) -> Collection[str]:
        return [str(user_id) for user_id in self._users]


class SocketSessions:
    """The sessions of this node's sockets, plus a heap of token deadlines for the sweeper and
    the presence tally, which every subscription and every session's start and end go through.

    A refreshed token pushes new deadlines; old heap entries are recognised as stale because
    they no longer match the session's `expires_at`, so nothing has to be removed from the heap.
    """

    def __init__(self, warning_s: int) -> None:
        self._by_sid: dict[str, SocketSession] = {}
        self._users: Counter[uuid.UUID] = Counter()
        self._deadlines: list[tuple[datetime, str, datetime, Deadline]] = []
        self._warning = timedelta(seconds=warning_s)
        self.presence = PresenceTally(self._users)

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
        """A socket is accepted; a resumed one already carries the markets it is subscribed to."""
        self._by_sid[session.sid] = session
        self._users[session.user_id] += 1
        user_id = str(session.user_id)
        if self._users[session.user_id] == 1:
            self.presence.came_or_went(user_id, True)
        for market_id in session.markets:
            self.presence.watch(user_id, market_id)
        self._schedule(session)

    def remove(self, sid: str) -> SocketSession | None:
        session = self._by_sid.pop(sid, None)
        if session is not None:
            user_id = str(session.user_id)
            for market_id in session.markets:
                self.presence.unwatch(user_id, market_id)
            self._users[session.user_id] -= 1
            if self._users[session.user_id] <= 0:
                del self._users[session.user_id]
                self.presence.came_or_went(user_id, False)
        return session

    def subscribe(self, session: SocketSession, market_id: str) -> None:
        """The socket joined the market's room: it counts among the market's watchers (while
        it is connected: a session already removed no longer counts)."""
        if market_id in session.markets:
            return
        session.markets.add(market_id)
        if self._by_sid.get(session.sid) is session:
            self.presence.watch(str(session.user_id), market_id)

    def unsubscribe(self, session: SocketSession, market_id: str) -> None:
        if market_id not in session.markets:
            return
        session.markets.discard(market_id)
        if self._by_sid.get(session.sid) is session:
            self.presence.unwatch(str(session.user_id), market_id)

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
