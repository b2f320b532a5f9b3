"""The operator commands as an operator runs them: real processes, exit codes, what they print."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis

from tests.betting_fixtures import make_user


async def thisthat(service_urls: tuple[str, str], tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "DATABASE_URL": service_urls[0],
        "REDIS_URL": service_urls[1],
        "DATA_DIR": str(tmp_path),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_migrate_audit_and_leaderboard_rebuild(
    service_urls: tuple[str, str], tmp_path: Path, db: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    code, output = await thisthat(service_urls, tmp_path, "migrate")
    assert (code, output.strip().splitlines()[-1]) == (0, "schema is up to date")

    user = await make_user(db, "audited")
    code, output = await thisthat(service_urls, tmp_path, "audit")
    assert code == 0 and "audit passed" in output

    code, output = await thisthat(service_urls, tmp_path, "leaderboard", "rebuild")
    assert code == 0 and "rebuilt" in output

    await db.execute("UPDATE users SET balance = balance - 1 WHERE id = $1", user)
    code, output = await thisthat(service_urls, tmp_path, "audit")
    assert code == 1
    assert "invariant 1 violated for user audited" in output and "audit FAILED" in output


async def test_production_without_secrets_refuses_to_start_with_a_clear_message(
    service_urls: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODE_ENV", "production")
    monkeypatch.delenv("JWT_ACCESS_SECRET", raising=False)
    code, output = await thisthat(service_urls, tmp_path, "serve")
    assert code == 2
    assert "NODE_ENV=production refuses to start without JWT_ACCESS_SECRET" in output
