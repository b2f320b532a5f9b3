"""Connection state recovery in Redis: the one sequence that orders every push, the pushes a
session may have missed, and the sessions themselves (docs/protocol.md, "Reconnecting").

Every batch of pushes a node publishes takes a block of offsets from one counter and is
published in the same Lua call, so the push channel carries offsets in increasing order and every
node delivers them in that order: a client's last offset says exactly what it has seen. The same
call keeps what a returning client may need: a user's pushes in full (only while a recoverable
session of theirs exists, and at most PERSONAL_KEEP of them), and for shared rooms (a market's
odds, a leaderboard) only the latest push of each kind. Everything expires with the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson
import redis.asyncio as redis

from storage import keys

# The most pushes kept per personal room; a session that missed more is not recovered.
PERSONAL_KEEP: Final = 100

# KEYS: the sequence, the channel. ARGV: the published blob, the batch size, 1 to keep history,
# the history's lifetime in seconds, PERSONAL_KEEP, then per kept push: its index in the batch
# (1-based), its room, its kind ("p" personal, "s" shared state), its event and its packet JSON.
# Answers the offset of the batch's last push; the message is "<last offset> <blob>".
PUBLISH: Final = """
local n = tonumber(ARGV[2])
local last = redis.call('INCRBY', KEYS[1], n)
if ARGV[3] == '1' then
    local ttl = tonumber(ARGV[4])
    local keep = tonumber(ARGV[5])
    local i = 6
    while i <= #ARGV do
        local offset = last - n + tonumber(ARGV[i])
        local room, kind, event, packet = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
        if kind == 's' then
            local key = 'tt:rec:state:' .. room
            redis.call('HSET', key, event, offset .. ' ' .. packet)
            redis.call('EXPIRE', key, ttl)
        elseif redis.call('EXISTS', 'tt:rec:wanted:' .. room) == 1 then
            local key = 'tt:rec:personal:' .. room
            redis.call('ZADD', key, offset, offset .. ' ' .. packet)
            local extra = redis.call('ZCARD', key) - keep
            if extra > 0 then
                local dropped = redis.call('ZRANGE', key, extra - 1, extra - 1, 'WITHSCORES')
                redis.call('ZREMRANGEBYRANK', key, 0, extra - 1)
                redis.call('SET', 'tt:rec:trimmed:' .. room, dropped[2], 'EX', ttl)
            end
            redis.call('EXPIRE', key, ttl)
        end
        i = i + 5
    end
end
redis.call('PUBLISH', KEYS[2], last .. ' ' .. ARGV[1])
return last
"""

# KEYS: the session. ARGV: the user id. Answers the session's fields (and bumps its generation,
# so the connection it came from can no longer expire it) when it belongs to that user.
CLAIM: Final = """
if redis.call('HGET', KEYS[1], 'user') ~= ARGV[1] then
    return nil
end
redis.call('HINCRBY', KEYS[1], 'gen', 1)
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: the session. ARGV: the generation of the connection ending, the window in seconds.
RELEASE: Final = """
if redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then
    return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

assert keys.PREFIX == "tt:"  # the scripts spell the prefix out: Redis Lua gets no Python


@dataclass(frozen=True, slots=True)
class KeptPush:
    """One push a batch keeps for recovery: its place in the batch (1-based), room and packet."""

    index: int
    room: str
    shared: bool
    event: str
    packet: bytes  # the JSON of [event, data], as sent


@dataclass(frozen=True, slots=True)
class StoredSession:
    pid: str
    user_id: str
    sid: str
    rooms: tuple[str, ...]
    since: int  # the sequence when the session began: nothing older concerns it
    generation: int


@dataclass(frozen=True, slots=True)
class Missed:
    """What a returning session missed, in offset order, or `complete` False when some of it is
    gone (trimmed) and the session must start over."""

    complete: bool
    pushes: tuple[tuple[int, bytes], ...]  # (offset, packet JSON)
    sequence: int  # every push with an offset up to this one was looked at


class RecoveryStore:
    def __init__(self, client: redis.Redis, window_s: int) -> None:
        self.client = client
        self.window_s = window_s
        # Kept a little past the window, so a session that ends at its last moment still finds them.
        self.ttl_s = window_s + 60
        self._publish = client.register_script(PUBLISH)
        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE)

    async def publish(self, channel: str, blob: bytes, size: int, kept: Sequence[KeptPush]) -> int:
        """Publish a batch of `size` pushes under fresh offsets; answers the last offset."""
        args: list[bytes | str | int] = [blob, size, 1 if kept else 0, self.ttl_s, PERSONAL_KEEP]
        for push in kept:
            args += [push.index, push.room, "s" if push.shared else "p", push.event, push.packet]
        return int(await self._publish(keys=[keys.PUSH_SEQUENCE, channel], args=args))

    async def sequence(self) -> int:
        return int(await self.client.get(keys.PUSH_SEQUENCE) or 0)

    async def save(self, session: StoredSession, personal_rooms: Iterable[str]) -> None:
        """A recoverable session is live: kept while it lives, and its personal pushes with it."""
        await self.save_fields(
            session.pid,
            session.user_id,
            session.sid,
            session.rooms,
            session.since,
            session.generation,
            personal_rooms,
        )

    async def save_fields(
        self,
        pid: str,
        user_id: str,
        sid: str,
        rooms: Iterable[str],
        since: int,
        generation: int,
        personal_rooms: Iterable[str],
    ) -> None:
        key = keys.recovery_session(pid)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "user": user_id,
                    "sid": sid,
                    "rooms": orjson.dumps(list(rooms)),
                    "since": since,
                    "gen": generation,
                },
            )
            pipe.expire(key, self.ttl_s)
            for room in personal_rooms:
                pipe.set(keys.recovery_wanted(room), 1, ex=self.ttl_s)
            await pipe.execute()

    async def set_rooms(self, pid: str, rooms: Iterable[str]) -> None:
        await self.client.hset(keys.recovery_session(pid), "rooms", orjson.dumps(sorted(rooms)))

    async def keep_alive(self, pids: Iterable[str], personal_rooms: Iterable[str]) -> None:
        """Live sessions (and their personal histories) outlast a node killed without a word by
        the window, counted from this call."""
        async with self.client.pipeline(transaction=False) as pipe:
            for pid in pids:
                pipe.expire(keys.recovery_session(pid), self.ttl_s)
            for room in personal_rooms:
                pipe.set(keys.recovery_wanted(room), 1, ex=self.ttl_s)
            await pipe.execute()

    async def release(self, pid: str, generation: int) -> None:
        """The connection of this generation ended: the session waits out the window."""
        await self._release(keys=[keys.recovery_session(pid)], args=[generation, self.window_s])

    async def claim(self, pid: str, user_id: str) -> StoredSession | None:
        """The session, if it exists and is this user's; it is then the claimant's."""
        fields = await self._claim(keys=[keys.recovery_session(pid)], args=[user_id])
        if not fields:
            return None
        raw = dict(zip(fields[::2], fields[1::2], strict=True))
        text = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        return StoredSession(
            pid=pid,
            user_id=text["user"],
            sid=text["sid"],
            rooms=tuple(orjson.loads(text["rooms"])),
            since=int(text["since"]),
            generation=int(text["gen"]),
        )

    async def missed(
        self, personal_rooms: Sequence[str], shared_rooms: Sequence[str], after: int
    ) -> Missed:
        """Every push to the session's rooms with an offset above `after`: personal ones in full,
        shared rooms' latest of each kind; `complete` False when part of it was trimmed."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(keys.PUSH_SEQUENCE)
            for room in personal_rooms:
                pipe.zrangebyscore(keys.recovery_personal(room), f"({after}", "+inf")
                pipe.get(keys.recovery_trimmed(room))
            for room in shared_rooms:
                pipe.hvals(keys.recovery_state(room))
            answers = await pipe.execute()
        sequence = int(answers[0] or 0)
        found: dict[int, bytes] = {}
        complete = True
        position = 1
        for _ in personal_rooms:
            entries, trimmed = answers[position], answers[position + 1]
            position += 2
            if trimmed is not None and int(trimmed) > after:
                complete = False
            for entry in entries:
                offset, packet = _entry(entry)
                found[offset] = packet
        for _ in shared_rooms:
            for entry in answers[position]:
                offset, packet = _entry(entry)
                if offset > after:
                    found[offset] = packet
            position += 1
        return Missed(complete, tuple(sorted(found.items())), sequence)


def _entry(entry: bytes | str) -> tuple[int, bytes]:
    raw = entry.encode() if isinstance(entry, str) else entry
    offset, _, packet = raw.partition(b" ")
    return int(offset), packet
