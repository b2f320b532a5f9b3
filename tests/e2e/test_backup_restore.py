"""deploy/backup.md's drill: pg_dump while players bet, pg_restore into a fresh PostgreSQL, and
`thisthat leaderboard rebuild` then `thisthat audit` pass on the restored copy; and the WAL
archiving deploy/docker-compose.yml turns on ships segments to the archive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis

from storage.embedded import EmbeddedPostgres
from tests.betting_fixtures import insert_market
from tests.conftest import PlayerFactory
from tests.e2e.test_cli import thisthat
from tests.e2e.test_proxy_cluster import compose_config, postgres_options
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


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_the_compose_files_wal_archiving_copies_each_segment_to_the_archive(
    tmp_path: Path,
) -> None:
    """PostgreSQL with deploy/docker-compose.yml's settings (its /backup in a folder here) copies
    a finished WAL segment into the archive, once, and never overwrites an archived one."""
    options = postgres_options(compose_config())
    backup = tmp_path / "backup"
    settings = {name: value.replace("/backup/", f"{backup}/") for name, value in options.items()}
    postgres = EmbeddedPostgres(tmp_path / "archiving")
    url = postgres.start()
    try:
        pgdata = (tmp_path / "archiving" / "postgres").resolve()
        # What the compose file's entrypoint does: the archive belongs to the server's user.
        archive = backup / "wal"
        archive.mkdir(parents=True)
        owner = pgdata.stat()
        for folder in (backup, archive):
            os.chown(folder, owner.st_uid, owner.st_gid)
        with (pgdata / "postgresql.conf").open("a") as conf:
            for name, value in settings.items():
                conf.write(f"{name} = '{value}'\n")
        from pgserver import pg_ctl  # type: ignore[attr-defined]  # star-exported by pgserver

        user = postgres._server.system_user  # type: ignore[attr-defined]  # pgserver's own user
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=user, timeout=30)

        connection = await asyncpg.connect(url)
        try:
            assert await connection.fetchval("SHOW archive_mode") == "on"
            assert await connection.fetchval("SHOW archive_command") == settings["archive_command"]
            await connection.execute("CREATE TABLE archived AS SELECT generate_series(1, 1000) n")
            segment = await connection.fetchval("SELECT pg_walfile_name(pg_switch_wal())")
            for _ in range(300):  # bounded: 30 s
                stats = await connection.fetchrow("SELECT * FROM pg_stat_archiver")
                if stats["last_archived_wal"] and stats["last_archived_wal"] >= segment:
                    break
                await asyncio.sleep(0.1)
            assert stats["failed_count"] == 0, dict(stats)
            assert stats["last_archived_wal"] >= segment, dict(stats)
        finally:
            await connection.close()
        copied = archive / segment
        assert copied.stat().st_size == 16 * 1024 * 1024
        assert all(re.fullmatch(r"[0-9A-F]{24}", path.name) for path in archive.iterdir())
        # An archived segment is never overwritten: the command fails rather than copy again.
        before = copied.stat().st_mtime_ns
        command = settings["archive_command"].replace("%f", segment).replace("%p", str(copied))
        process = await asyncio.create_subprocess_shell(command)
        assert await process.wait() != 0
        assert copied.stat().st_mtime_ns == before
    finally:
        postgres.stop()
