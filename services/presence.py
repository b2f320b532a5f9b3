"""Presence: how many players watch each market and how many are online, each counted once per
user across every node. Each node writes its share every interval (storage/presence.py) and
reads the totals back; nothing of it runs on the way of a bet."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import redis.asyncio as redis

from storage.presence import PresenceBoard, SetWrite

# A node's share lapses after this many intervals without a write: a node killed without a word
# leaves the counts within that time, and a late write or two does not blink a count.
TTL_INTERVALS: Final = 3
# The key of a node's connected users among its changes, beside the market ids.
ONLINE: Final = ""


class Tally(Protocol):
    """Who is on this node: the users subscribed to each market, and the users connected."""

    def take_changes(self) -> dict[str, dict[str, bool]]:
        """Since the last call: per market id (ONLINE for the connected users), each user who
        came (True) or went (False)."""
        ...

    def markets(self) -> Collection[str]:
        """The markets this node's sockets are subscribed to."""
        ...

    def watchers(self, market_id: str) -> Collection[str]:
        """The users subscribed to the market here."""
        ...

    def online(self) -> Collection[str]:
        """The users connected here."""
        ...


@dataclass(slots=True)
class Totals:
    """What the last pass read: the counts of this node's markets, and who was online."""

    watchers: dict[str, int] = field(default_factory=dict)
    # Counts whose change this node is to push now (no node pushed one within the interval).
    changed: dict[str, int] = field(default_factory=dict)
    online: int = 0


class Presence:
    def __init__(self, client: redis.Redis, interval_s: float) -> None:
        self.node = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        interval_ms = max(1, round(interval_s * 1000))
        self.board = PresenceBoard(
            client, self.node, interval_ms=interval_ms, ttl_ms=interval_ms * TTL_INTERVALS
        )
        self.nodes: list[str] = [self.node]
        self.totals = Totals()
        # Sets Redis no longer holds as this node knows them (lapsed, or a write failed).
        self._rewrite: set[str] = set()
        self._rewrite_online = False

    async def publish(self, tally: Tally) -> Totals:
        """Write this node's share, then count every market it has watchers for (and those it
        just lost, so their counts fall) and everyone online."""
        changes = tally.take_changes()
        markets = tally.markets()
        writes: dict[str, SetWrite] = {}
        for market_id in self._rewrite:
            writes[market_id] = SetWrite(list(tally.watchers(market_id)), whole=True)
        for market_id, users in changes.items():
            if market_id != ONLINE and market_id not in writes:
                writes[market_id] = _change(users)
        online = None
        if self._rewrite_online:
            online = SetWrite(list(tally.online()), whole=True)
        elif ONLINE in changes:
            online = _change(changes[ONLINE])
        try:
            written = await self.board.write(
                writes, [market_id for market_id in markets if market_id not in writes], online
            )
        except BaseException:
            # Which of these reached Redis is unknown: written whole next time.
            self._rewrite |= set(writes)
            self._rewrite_online = self._rewrite_online or online is not None
            raise
        self._rewrite = written.lapsed
        self._rewrite_online = written.online_lapsed
        self.nodes = written.nodes
        counted = set(markets) | set(writes)
        counts, online_count = await self.board.count(self.nodes, counted, set(writes))
        self.totals = Totals(
            watchers={market_id: count.count for market_id, count in counts.items()},
            changed={market_id: count.count for market_id, count in counts.items() if count.push},
            online=online_count,
        )
        return self.totals

    async def watchers(self, user_id: str, markets: Mapping[str, bool]) -> dict[str, int]:
        """The watchers of each market, counting `user_id` as they are now (`markets`: whether
        they watch it on this node)."""
        return await self.board.answer(self.nodes, user_id, markets)

    async def online(self, user_id: str) -> int:
        """Everyone online, the asking user included."""
        return await self.board.online(self.nodes, user_id)

    async def leave(self, tally: Tally) -> None:
        """This node stops: its share leaves the counts now."""
        await self.board.leave({*tally.markets(), *self._rewrite, *tally.take_changes()} - {ONLINE})


def _change(users: Mapping[str, bool]) -> SetWrite:
    return SetWrite(
        present=[user for user, here in users.items() if here],
        absent=[user for user, here in users.items() if not here],
    )
