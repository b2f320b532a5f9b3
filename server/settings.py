"""Settings: one frozen, typed object built from config.toml plus environment overrides.

Every field is named after its environment variable in DESIGN.md's table (lower case).
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, get_type_hints

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.toml"

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


def parse_duration(text: str | int) -> int:
    """'15m' -> 900. Plain numbers are seconds."""
    if isinstance(text, int):
        return text
    match = _DURATION.match(text)
    if not match:
        raise SettingsError(f"bad duration {text!r}: use a number with s, m, h or d")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class Settings:
    node_env: str = "development"
    host: str = "0.0.0.0"  # noqa: S104 - the server is meant to listen on every interface
    port: int = 3000
    data_dir: Path = Path("./var")
    database_url: str | None = None
    redis_url: str | None = None
    database_pool_max: int = 20

    jwt_access_secret: str = ""
    jwt_refresh_secret: str = ""
    jwt_access_expires_in: int = 900
    jwt_refresh_expires_in: int = 7 * 86400
    jwt_issuer: str = "thisthat"
    jwt_audience: str = "thisthat-clients"
    bcrypt_cost: int = 12

    cors_origins: tuple[str, ...] = ("http://localhost:5173",)

    polymarket_base_url: str = "https://clob.polymarket.com"
    polymarket_gamma_url: str = "https://gamma-api.polymarket.com"
    polymarket_api_key: str | None = None
    feed: str = "polymarket"
    feed_markets_interval_s: float = 300
    feed_odds_interval_s: float = 30
    feed_resolution_interval_s: float = 60
    feed_max_markets: int = 200
    # The poller's Redis lease: renewed every third of it; a dead node's lease lapses after it.
    feed_lease_ttl_s: float = 10
    feed_timeout_s: float = 10
    feed_replay_speed: float = 1.0
    feed_replay_loop: bool = False

    odds_max_age_s: float = 120
    min_bet_amount: Decimal = Decimal("10")
    max_bet_amount: Decimal = Decimal("10000")
    starting_credits: Decimal = Decimal("1000")
    daily_reward_credits: Decimal = Decimal("100")
    max_balance: Decimal = Decimal("1000000")

    rate_limit_enabled: bool = True
    # Limits: (requests, window seconds). Per IP and per username for auth, per user for events.
    rate_limit_signup_per_ip: tuple[int, int] = (10, 3600)
    rate_limit_login_per_ip: tuple[int, int] = (30, 300)
    rate_limit_login_per_username: tuple[int, int] = (10, 300)
    rate_limit_refresh_per_ip: tuple[int, int] = (60, 60)
    rate_limit_events_per_user: tuple[int, int] = (50, 1)
    # Bets get their own, larger budget per user: a load tester's player bets fast.
    rate_limit_bets_per_user: tuple[int, int] = (20, 1)

    log_level: str = "INFO"
    # The read-only admin view at /admin is off unless this is set.
    admin_token: str | None = None
    # Seconds before expiry at which a socket gets `auth:expiring`.
    token_expiry_warning_s: int = 60

    @property
    def is_production(self) -> bool:
        return self.node_env == "production"

    @property
    def uses_embedded_services(self) -> bool:
        return self.database_url is None or self.redis_url is None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _convert(name: str, hint: Any, raw: Any) -> Any:
    """Turn a TOML or environment value into the field's declared type."""
    if raw is None:
        return None
    if name.endswith("_expires_in"):
        return parse_duration(raw)
    if name.startswith("rate_limit_") and name != "rate_limit_enabled":
        if isinstance(raw, str):
            count, _, window = raw.partition("/")
            return (int(count), int(window or 1))
        return tuple(int(part) for part in raw)
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in {"1", "true", "yes", "on"}
    if hint is Decimal:
        return Decimal(str(raw))
    if hint is Path:
        return Path(str(raw))
    if hint == tuple[str, ...]:
        items = raw if isinstance(raw, list) else str(raw).split(",")
        return tuple(item.strip() for item in items if item.strip())
    if hint is float:
        return float(raw)
    if hint is int:
        return int(raw)
    return str(raw) or None


def load_settings(
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults <- config.toml <- environment <- explicit overrides (used by tests)."""
    environ = os.environ if environ is None else environ
    path = config_path or Path(environ.get("THISTHAT_CONFIG", DEFAULT_CONFIG_PATH))
    file_values: dict[str, Any] = {}
    if path.exists():
        with path.open("rb") as handle:
            file_values = tomllib.load(handle)

    values: dict[str, Any] = {}
    hints = get_type_hints(Settings)
    for spec in fields(Settings):
        name = spec.name
        raw: Any = file_values.get(name)
        env_value = environ.get(name.upper())
        if env_value is not None and env_value != "":
            raw = env_value
        if raw is not None:
            values[name] = _convert(name, hints[name], raw)
    unknown = set(file_values) - {spec.name for spec in fields(Settings)}
    if unknown:
        raise SettingsError(f"unknown keys in {path}: {', '.join(sorted(unknown))}")
    values.update(overrides)
    settings = Settings(**values)
    _check(settings)
    return _with_development_secrets(settings)


def _check(settings: Settings) -> None:
    if settings.is_production:
        missing = [
            name.upper()
            for name in ("jwt_access_secret", "jwt_refresh_secret", "database_url", "redis_url")
            if not getattr(settings, name)
        ]
        if missing:
            raise SettingsError(
                "NODE_ENV=production refuses to start without "
                + ", ".join(missing)
                + ": set real secrets and point DATABASE_URL/REDIS_URL at real servers "
                "(the embedded PostgreSQL and Redis are for development only)."
            )
        if min(len(settings.jwt_access_secret), len(settings.jwt_refresh_secret)) < 32:
            raise SettingsError("JWT secrets must be at least 32 characters long")
        if settings.jwt_access_secret == settings.jwt_refresh_secret:
            raise SettingsError("JWT_ACCESS_SECRET and JWT_REFRESH_SECRET must differ")
    if "*" in settings.cors_origins:
        raise SettingsError("CORS_ORIGINS must list origins; '*' is not allowed")
    if settings.min_bet_amount > settings.max_bet_amount:
        raise SettingsError("MIN_BET_AMOUNT is above MAX_BET_AMOUNT")
    if not 1 <= settings.database_pool_max <= 20:
        raise SettingsError("DATABASE_POOL_MAX must be between 1 and 20")


def _with_development_secrets(settings: Settings) -> Settings:
    """Outside production, missing JWT secrets are generated once per data dir and kept."""
    if settings.jwt_access_secret and settings.jwt_refresh_secret:
        return settings
    path = settings.data_dir / "jwt-secrets.toml"
    stored: dict[str, Any] = {}
    if path.exists():
        with path.open("rb") as handle:
            stored = tomllib.load(handle)
    if not stored.get("access") or not stored.get("refresh"):
        stored = {"access": secrets.token_urlsafe(48), "refresh": secrets.token_urlsafe(48)}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'access = "{stored["access"]}"\nrefresh = "{stored["refresh"]}"\n')
        path.chmod(0o600)
    return settings.replace(
        jwt_access_secret=settings.jwt_access_secret or stored["access"],
        jwt_refresh_secret=settings.jwt_refresh_secret or stored["refresh"],
    )


__all__ = ["Settings", "SettingsError", "load_settings", "parse_duration"]
