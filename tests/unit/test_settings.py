"""Settings: code defaults, THISTHAT_CONFIG and environment overrides, one-line refusals of bad values."""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from server.settings import (
    SCHEMA_BALANCE_CEILING,
    Settings,
    SettingsError,
    load_settings,
    parse_duration,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_live_in_code_without_any_file(tmp_path: Path) -> None:
    settings = load_settings(environ={"DATA_DIR": str(tmp_path)})
    assert settings.port == 3000
    assert settings.jwt_access_expires_in == 900
    assert settings.jwt_refresh_expires_in == 7 * 86400
    assert settings.starting_credits == Decimal("1000")
    assert settings.cors_origins == ("http://localhost:5173",)
    assert settings.database_url is None


def test_environment_overrides_use_the_documented_names(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "DATA_DIR": str(tmp_path),
            "PORT": "4000",
            "MAX_BET_AMOUNT": "500.50",
            "RATE_LIMIT_ENABLED": "false",
            "CORS_ORIGINS": "https://a.example, https://b.example",
            "JWT_ACCESS_EXPIRES_IN": "2h",
            "FEED": "off",
            "FEED_ODDS_INTERVAL_S": "1.5",
        }
    )
    assert settings.port == 4000
    assert settings.max_bet_amount == Decimal("500.50")
    assert settings.rate_limit_enabled is False
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.jwt_access_expires_in == 7200
    assert settings.feed == "off"
    assert settings.feed_odds_interval_s == 1.5


def test_development_secrets_are_generated_once_per_data_dir(tmp_path: Path) -> None:
    first = load_settings(environ={"DATA_DIR": str(tmp_path)})
    second = load_settings(environ={"DATA_DIR": str(tmp_path)})
    assert first.jwt_access_secret and first.jwt_access_secret == second.jwt_access_secret
    assert first.jwt_access_secret != first.jwt_refresh_secret


def test_production_refuses_missing_secrets_and_embedded_services(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="JWT_ACCESS_SECRET.*DATABASE_URL"):
        load_settings(environ={"DATA_DIR": str(tmp_path), "NODE_ENV": "production"})
    with pytest.raises(SettingsError, match="REDIS_URL"):
        load_settings(
            environ={
                "NODE_ENV": "production",
                "JWT_ACCESS_SECRET": "a" * 32,
                "JWT_REFRESH_SECRET": "b" * 32,
                "DATABASE_URL": "postgresql://db/thisthat",
            }
        )


def test_wildcard_cors_origin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CORS_ORIGINS"):
        load_settings(environ={"DATA_DIR": str(tmp_path), "CORS_ORIGINS": "*"})


def test_durations() -> None:
    assert parse_duration("15m") == 900
    assert parse_duration("7d") == 604800
    assert parse_duration("30") == 30
    with pytest.raises(SettingsError):
        parse_duration("soon")


def test_the_commented_config_toml_shows_the_code_defaults(tmp_path: Path) -> None:
    """config.toml documents every key at its default; uncommented, it changes nothing."""
    lines = (ROOT / "config.toml").read_text().splitlines()
    settings_lines = [
        line.removeprefix("# ").split("  #")[0]
        for line in lines
        if re.match(r"^# [a-z_]+ = ", line)
    ]
    uncommented = tmp_path / "config.toml"
    uncommented.write_text("\n".join(settings_lines) + "\n")
    keys = set(tomllib.loads(uncommented.read_text()))
    documented = {name for name in Settings.__dataclass_fields__ if "secret" not in name}
    assert documented - keys <= {
        "database_url",
        "redis_url",
        "polymarket_api_key",
        "admin_token",
        "metrics_token",
    }
    from_file = load_settings(config_path=uncommented, environ={"DATA_DIR": str(tmp_path)})
    from_code = load_settings(environ={"DATA_DIR": str(tmp_path)})
    assert from_file.replace(data_dir=tmp_path) == from_code


def test_a_config_file_is_read_from_thisthat_config_and_the_environment_wins(
    tmp_path: Path,
) -> None:
    path = tmp_path / "thisthat.toml"
    path.write_text('port = 4100\nfeed = "off"\nmax_bet_amount = 250\n')
    settings = load_settings(
        environ={"DATA_DIR": str(tmp_path), "THISTHAT_CONFIG": str(path), "PORT": "4200"}
    )
    assert (settings.port, settings.feed, settings.max_bet_amount) == (4200, "off", Decimal(250))
    path.write_text("port = 0\n")
    with pytest.raises(SettingsError, match=r"^PORT=0 \(in .*thisthat.toml\) is not allowed"):
        load_settings(environ={"DATA_DIR": str(tmp_path), "THISTHAT_CONFIG": str(path)})
    with pytest.raises(SettingsError, match="THISTHAT_CONFIG=.*existing TOML file"):
        load_settings(environ={"THISTHAT_CONFIG": str(tmp_path / "absent.toml")})


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("PORT", "abc", "a whole number from 1 to 65535"),
        ("PORT", "70000", "a whole number from 1 to 65535"),
        ("BCRYPT_COST", "lots", "a whole number from 4 to 31"),
        ("RATE_LIMIT_BETS_PER_USER", "fast", "count/window_seconds"),
        ("RATE_LIMIT_BETS_PER_USER", "20/0", "both whole numbers above 0"),
        ("RATE_LIMIT_SIGNUP_PER_IP", "0/60", "both whole numbers above 0"),
        ("MAX_BET_AMOUNT", "ten", "an amount above 0 with at most 2 decimals"),
        ("MIN_BET_AMOUNT", "0.001", "at most 2 decimals"),
        ("STARTING_CREDITS", "-5", "an amount above 0"),
        ("LOG_LEVEL", "verbose", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("RATE_LIMIT_ENABLED", "flase", "true or false"),
        ("FEED_REPLAY_LOOP", "yes please", "true or false"),
        ("NODE_ENV", "prod", "one of development, production, test"),
        ("MAX_BALANCE", "2000000", "at most 1000000"),
        ("FEED_REPLAY_SPEED", "0", "a speed factor above 0"),
        ("FEED_REPLAY_SPEED", "inf", "a speed factor above 0"),
        ("FEED_ODDS_INTERVAL_S", "nan", "a number of seconds above 0"),
        ("FEED", "bogus", "polymarket, off, or replay:"),
        ("FEED", "replay:missing.jsonl", "an existing timeline file; missing.jsonl does not exist"),
        ("DATABASE_POOL_MAX", "50", "a whole number from 1 to 20"),
        ("DATABASE_URL", "mysql://db/thisthat", "a postgresql:// URL"),
        ("REDIS_URL", "localhost:6379", "a redis://, rediss:// or unix:// URL"),
        ("JWT_ACCESS_EXPIRES_IN", "soon", "a duration above 0"),
        ("TRUSTED_PROXIES", "10.0.0.0/33", "comma-separated addresses or CIDRs"),
    ],
)
def test_every_bad_value_is_one_line_naming_the_variable_value_and_rule(
    tmp_path: Path, variable: str, value: str, allowed: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(environ={"DATA_DIR": str(tmp_path), variable: value})
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{variable}={value!r} is not allowed: expected ")
    assert allowed in message


def test_strict_values_still_accept_their_documented_spellings(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "DATA_DIR": str(tmp_path),
            "RATE_LIMIT_ENABLED": "0",
            "FEED_REPLAY_LOOP": "TRUE",
            "LOG_LEVEL": "debug",
            "NODE_ENV": "test",
            "RATE_LIMIT_BETS_PER_USER": "100 / 2",
            "MAX_BALANCE": "1000000.00",
            "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7, ::1",
        }
    )
    assert settings.rate_limit_enabled is False
    assert settings.feed_replay_loop is True
    assert settings.log_level == "DEBUG"
    assert settings.node_env == "test"
    assert settings.rate_limit_bets_per_user == (100, 2)
    assert settings.max_balance == SCHEMA_BALANCE_CEILING
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.168.1.7/32", "::1/128")


def test_a_relative_replay_file_is_found_from_the_working_directory_or_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    packaged = load_settings(
        environ={"DATA_DIR": str(tmp_path), "FEED": "replay:feeds/timelines/sample.jsonl"}
    )
    assert packaged.feed == f"replay:{ROOT / 'feeds/timelines/sample.jsonl'}"
    (tmp_path / "mine.jsonl").write_text("")
    local = load_settings(environ={"DATA_DIR": str(tmp_path), "FEED": "replay:mine.jsonl"})
    assert local.feed == f"replay:{tmp_path / 'mine.jsonl'}"


def test_the_balance_ceiling_is_the_schema_check() -> None:
    migration = (ROOT / "storage/migrations/0001_initial.sql").read_text()
    assert f"balance <= {SCHEMA_BALANCE_CEILING}" in migration
    assert f"open_potential_payout <= {SCHEMA_BALANCE_CEILING}" in migration


def test_min_bet_above_max_bet_names_both(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="MIN_BET_AMOUNT='500' is above MAX_BET_AMOUNT='100'"):
        load_settings(
            environ={"DATA_DIR": str(tmp_path), "MIN_BET_AMOUNT": "500", "MAX_BET_AMOUNT": "100"}
        )
