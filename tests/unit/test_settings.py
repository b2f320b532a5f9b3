"""Settings: config.toml defaults, environment overrides with DESIGN.md's names, production refusals."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from server.settings import SettingsError, load_settings, parse_duration


def test_defaults_come_from_config_toml(tmp_path: Path) -> None:
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
