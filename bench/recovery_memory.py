"""`python -m bench.recovery_memory`: Redis memory that connection state recovery costs per
player, connected and recently disconnected, measured on an embedded Redis.

A connected player who opted in holds a session (socket id, rooms, generation) and a flag that
keeps their personal pushes; a recently disconnected one holds the same until the window ends,
plus the personal pushes sent while away. Shared rooms (a market's latest odds, a board) cost per
room, not per player. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as redis

from storage.embedded import EmbeddedServices
from storage.recovery import KeptPush, RecoveryStore


async def used_memory(client: redis.Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def measure(redis_url: str, players: int, missed: int) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = RecoveryStore(client, window_s=120)
    await client.flushall()
    baseline = await used_memory(client)
    rooms = [f"user:{uuid.uuid4()}" for _ in range(players)]
    for room in rooms:
        await store.save_fields(
            secrets.token_urlsafe(18),
            room.removeprefix("user:"),
            secrets.token_urlsafe(15),
            [room, "market:" + str(uuid.uuid4()), "leaderboard:day"],
            0,
            0,
            [room],
        )
    connected = await used_memory(client)
    # While away, each player misses `missed` balance pushes (kept in full).
    packet = orjson.dumps(["balance", {"balance": 1234.56, "reason": "payout"}])
    for start in range(0, players, 100):
        chunk = rooms[start : start + 100]
        for _ in range(missed):
            kept = [
                KeptPush(index, room, False, "balance", packet)
                for index, room in enumerate(chunk, start=1)
            ]
            await store.publish("bench:pushes", b"[]", len(chunk), kept)
    away = await used_memory(client)
    await client.aclose()
    return {
        "players": players,
        "missedPushesEach": missed,
        "bytesPerConnectedPlayer": round((connected - baseline) / players),
        "bytesPerDisconnectedPlayer": round((away - baseline) / players),
        "bytesPerMissedPush": round((away - connected) / (players * missed)) if missed else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.recovery_memory", description=__doc__)
    parser.add_argument("--players", type=int, default=10_000)
    parser.add_argument("--missed", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="thisthat-recovery-") as folder:
        services = EmbeddedServices(Path(folder))
        _, redis_url = services.start("postgresql://unused", None)
        try:
            figures = asyncio.run(measure(redis_url, args.players, args.missed))
        finally:
            services.stop()
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
