"""The cross-node count of each player's sockets on a real Redis: a node vouching for its sockets
keeps them counted, in chunks whatever their number; sockets nobody vouches for lapse."""

from __future__ import annotations

import time

import redis.asyncio as redis

from storage import keys
from storage.socket_slots import STALE_S, VOUCH_CHUNK, SocketSlots


async def test_vouching_refreshes_every_socket_in_chunks_and_the_unvouched_lapse(
    redis_client: redis.Redis,
) -> None:
    slots = SocketSlots(redis_client)
    sockets = [(f"vouched-user-{n % 700}", f"sid-{n}") for n in range(VOUCH_CHUNK * 2 + 100)]
    long_ago = int((time.time() - STALE_S - 60) * 1000)
    for user_id, sid in sockets:
        await redis_client.zadd(keys.socket_slots(user_id), {sid: long_ago})
    await redis_client.zadd(keys.socket_slots("vouched-user-0"), {"gone-sid": long_ago})

    before = int(time.time() * 1000)
    await slots.vouch(sockets)
    for user_id, sid in sockets:
        score = await redis_client.zscore(keys.socket_slots(user_id), sid)
        assert score is not None and score >= before, (user_id, sid)
        assert 0 < await redis_client.ttl(keys.socket_slots(user_id)) <= int(STALE_S) * 2
    # The socket no node vouched for does not count any more: its place goes to a new one.
    holds = await redis_client.zcard(keys.socket_slots("vouched-user-0"))
    assert await slots.claim("vouched-user-0", "new-sid", cap=holds)
    assert await redis_client.zscore(keys.socket_slots("vouched-user-0"), "gone-sid") is None


async def test_vouching_sends_one_call_per_chunk(redis_client: redis.Redis) -> None:
    slots = SocketSlots(redis_client)
    script = slots._vouch
    sizes: list[int] = []

    async def counted(*, keys: list[str], args: list[object]) -> object:
        sizes.append(len(keys))
        return await script(keys=keys, args=args)

    slots._vouch = counted  # type: ignore[assignment]
    await slots.vouch([])
    await slots.vouch([(f"chunked-{n}", f"sid-{n}") for n in range(VOUCH_CHUNK * 2 + 1)])
    assert sizes == [VOUCH_CHUNK, VOUCH_CHUNK, 1]
