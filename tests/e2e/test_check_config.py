"""`thisthat serve` with a bad setting, as an operator meets it: one line, exit code 2, nothing started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "THISTHAT_CONFIG"}
    }
    return subprocess.run(  # noqa: S603 - our own CLI with fixed arguments
        [sys.executable, "-m", "server.cli", "serve", *args],
        env={**environ, "DATA_DIR": str(tmp_path / "var"), "FEED": "off", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "abc"),
        ("BCRYPT_COST", "lots"),
        ("RATE_LIMIT_BETS_PER_USER", "fast"),
        ("RATE_LIMIT_BETS_PER_USER", "20/0"),
        ("MAX_BET_AMOUNT", "ten"),
        ("LOG_LEVEL", "verbose"),
        ("RATE_LIMIT_ENABLED", "flase"),
        ("NODE_ENV", "prod"),
        ("MAX_BALANCE", "2000000"),
        ("FEED_REPLAY_SPEED", "0"),
        ("FEED", "bogus"),
        ("FEED", "replay:missing.jsonl"),
        ("TRUSTED_PROXIES", "proxy.example"),
    ],
)
def test_check_config_refuses_a_bad_value_in_one_line(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = serve(tmp_path, "--check-config", **{variable: value})
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"thisthat: configuration error: {variable}={value!r}")
    assert "is not allowed: expected" in lines[0]


def test_serve_refuses_a_bad_value_before_starting_anything(tmp_path: Path) -> None:
    """Without --check-config too: no embedded service, no data folder, no traceback."""
    result = serve(tmp_path, RATE_LIMIT_ENABLED="flase")
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)
    assert "RATE_LIMIT_ENABLED='flase'" in result.stderr
    assert not (tmp_path / "var").exists()


def test_check_config_accepts_good_settings_and_starts_nothing(tmp_path: Path) -> None:
    result = serve(
        tmp_path,
        "--check-config",
        FEED="replay:feeds/timelines/sample.jsonl",
        RATE_LIMIT_BETS_PER_USER="1000/1",
        TRUSTED_PROXIES="127.0.0.1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration is valid")
    # At most the development JWT secrets are written; no service, no database files.
    assert {path.name for path in (tmp_path / "var").glob("*")} <= {"jwt-secrets.toml"}


def test_production_checks_stay_one_clear_line(tmp_path: Path) -> None:
    result = serve(tmp_path, "--check-config", NODE_ENV="production")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "NODE_ENV=production refuses to start without JWT_ACCESS_SECRET" in result.stderr


def test_check_config_names_every_bad_value_one_line_each(tmp_path: Path) -> None:
    result = serve(tmp_path, "--check-config", PORT="abc", LOG_LEVEL="verbose", BCRYPT_COST="2")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr
    assert all(line.startswith("thisthat: configuration error: ") for line in lines)
    assert {line.split(": ")[2].split("=")[0] for line in lines} == {
        "PORT",
        "LOG_LEVEL",
        "BCRYPT_COST",
    }


def test_an_uppercase_key_in_the_config_file_says_keys_are_lowercase(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('PORT = "3001"\n')
    result = serve(tmp_path, "--check-config", THISTHAT_CONFIG=str(config))
    assert result.returncode == 2
    assert "PORT (keys are lowercase: port)" in result.stderr


def test_production_refuses_the_sample_secrets_of_the_env_example(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parents[2] / "deploy" / ".env.example").read_text()
    values = dict(
        line.split("=", 1)
        for line in example.splitlines()
        if line and not line.startswith("#") and "=" in line
    )
    env = {
        key: values[key]
        for key in ("NODE_ENV", "JWT_ACCESS_SECRET", "JWT_REFRESH_SECRET", "METRICS_TOKEN")
    }
    password = values["POSTGRES_PASSWORD"]
    env["DATABASE_URL"] = f"postgresql://thisthat:{password}@db.example:5432/thisthat"
    env["REDIS_URL"] = "redis://redis.example:6379/0"
    result = serve(tmp_path, "--check-config", **env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "refuses the sample values of deploy/.env.example in" in result.stderr
    for name in ("JWT_ACCESS_SECRET", "JWT_REFRESH_SECRET", "METRICS_TOKEN", "DATABASE_URL"):
        assert name in result.stderr
    # Real secrets pass.
    real = {
        **env,
        "JWT_ACCESS_SECRET": "a" * 40,
        "JWT_REFRESH_SECRET": "b" * 40,
        "METRICS_TOKEN": "c" * 30,
        "DATABASE_URL": "postgresql://thisthat:s3cret-pw@db.example:5432/thisthat",
    }
    assert serve(tmp_path, "--check-config", **real).returncode == 0
