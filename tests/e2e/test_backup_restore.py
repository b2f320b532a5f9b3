"""deploy/backup.md's drill: pg_dump while players bet, pg_restore into a fresh PostgreSQL, and
`thisthat leaderboard rebuild` then `thisthat audit` pass on the restored copy."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis

from storage.embedded import EmbeddedPostgres
from tests.betting_fixtures import insert_market
from tests.conftest import PlayerFactory
from tests.e2e.test_cli import thisthat
from tests.players import Player

PLAYERS = 6
EXPECTED_REFUSALS = {"RATE_LIMITED", "INSUFFICIENT_CREDITS"}


def postgres_tool(name: str) -> Path:
    """pgserver ships the PostgreSQL client programs next to its server."""
    pgserver = pytest.importorskip("pgserver", reason="the embedded PostgreSQL is not installed")
    path = Path(pgserver.__file__).parent / "pginstall" / "bin" / name
    assert path.exists(), f"{name} not shipped with pgserver at {path}"
    return path


async def run(*command: str | Path) -> str:
    process = await asyncio.create_subprocess_exec(
        *map(str, command), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output.decode()
    return output.decode()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_dump_under_bet_load_restores_into_a_fresh_postgres_that_passes_the_audit(
    service_urls: tuple[str, str],
    server: tuple[str, Any],
    new_player: PlayerFactory,
    db: asyncpg.Pool,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    markets = [str(await insert_market(db)) for _ in range(3)]
    players = [await new_player() for _ in range(PLAYERS)]
    dumping = asyncio.Event()
    dumped = asyncio.Event()
    unexpected: list[Any] = []

    async def bet_until_dumped(player: Player, index: int) -> int:
        placed = 0
        for n in range(1000):  # bounded; the dump ends long before
            answer = await player.call(
                "bet:place",
                {
                    "marketId": markets[n % len(markets)],
                    "side": "this" if n % 2 else "that",
                    "amount": 10,
                    "clientBetId": f"b{index}-{n}",
                },
            )
            if answer["ok"]:
                placed += 1
                dumping.set()
            elif answer["error"]["code"] not in EXPECTED_REFUSALS:
                unexpected.append(answer)
            if dumped.is_set():
                return placed
            await asyncio.sleep(0.005)
        return placed

    bettors = [asyncio.create_task(bet_until_dumped(p, i)) for i, p in enumerate(players)]
    dump = tmp_path / "thisthat.dump"
    try:
        await asyncio.wait_for(dumping.wait(), 20)
        bets_before = await db.fetchval("SELECT count(*) FROM bets")
        await run(postgres_tool("pg_dump"), "-Fc", "-d", service_urls[0], "-f", dump)
        dumped.set()
        bets_placed = sum(await asyncio.gather(*bettors))
    finally:
        dumped.set()
        for task in bettors:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*bettors, return_exceptions=True)
    bets_after = await db.fetchval("SELECT count(*) FROM bets")
    assert not unexpected, unexpected
    assert bets_placed > 0 and bets_after > bets_before  # bets went on while the dump ran

    fresh = EmbeddedPostgres(tmp_path / "restored")
    restored_url = fresh.start()
    try:
        await run(postgres_tool("pg_restore"), "--no-owner", "-d", restored_url, dump)
        restored = await asyncpg.connect(restored_url)
        try:
            restored_bets = await restored.fetchval("SELECT count(*) FROM bets")
            ledger_rows = await restored.fetchval("SELECT count(*) FROM ledger")
        finally:
            await restored.close()
        # A consistent snapshot taken between the two counts, bets and their ledger rows together.
        assert bets_before <= restored_bets <= bets_after
        assert ledger_rows >= restored_bets + PLAYERS

        # Redis as after a loss: rebuild the boards from the restored ledger, then audit.
        await redis_client.flushdb()
        urls = (restored_url, service_urls[1])
        code, output = await thisthat(urls, tmp_path, "leaderboard", "rebuild")
        assert code == 0, output
        code, output = await thisthat(urls, tmp_path, "audit")
        assert code == 0, output
        assert "audit passed" in output
    finally:
        fresh.stop()
