"""Settings: one frozen, typed object built from defaults, an optional TOML file and the environment.

Every field is named after its environment variable (lower case; config.toml lists them all). The
defaults live here, in code, so an installed server and a checkout behave the same; a TOML file
(THISTHAT_CONFIG) and then the environment override them. msgspec converts and range-checks every
value; a value it refuses becomes one line naming the variable, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args, get_origin, get_type_hints

import msgspec
from aiohttp import web

from game.rules import GameRules

# The users table's CHECK (storage/migrations/0001_initial.sql): no balance, and no balance plus
# open potential payout, may exceed it. A MAX_BALANCE above it would pass the game rules and then
# fail in the database as INTERNAL_ERROR.
SCHEMA_BALANCE_CEILING = Decimal("1000000")
# Every documented example secret (deploy/.env.example) carries this mark; production refuses it,
# in the secrets themselves and in the passwords of the service URLs.
SAMPLE_SECRET_MARK: Final = "change-me"
SECRETS: Final = (
    "jwt_access_secret",
    "jwt_refresh_secret",
    "admin_token",
    "metrics_token",
    "database_url",
    "redis_url",
)
# ADMIN_TOKEN and METRICS_TOKEN are bearer secrets compared as they are: long enough not to guess.
OPERATOR_TOKEN_MIN_CHARS = 24

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Where `FEED=replay:<file>` looks for a relative file after the working directory: the installed
# package root, which carries feeds/timelines/.
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


def parse_duration(text: str | int) -> int:
    """'15m' -> 900. Plain numbers are seconds."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _DURATION.match(str(text))
    if not match:
        raise SettingsError(f"bad duration {text!r}: use a number with s, m, h or d")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _allowed(text: str, **constraints: Any) -> Any:
    return msgspec.Meta(description=text, **constraints)


Port = Annotated[int, _allowed("a whole number from 1 to 65535", ge=1, le=65535)]
Seconds = Annotated[float, _allowed("a number of seconds above 0", gt=0)]
Count = Annotated[int, _allowed("a whole number of at least 1", ge=1)]
Duration = Annotated[int, _allowed("a duration above 0 such as 900, 15m, 2h or 7d", ge=1)]
Money = Annotated[Decimal, _allowed("an amount above 0 with at most 2 decimals")]
RateLimit = Annotated[
    tuple[int, int], _allowed("count/window_seconds with both whole numbers above 0, e.g. 20/1")
]
Flag = Annotated[bool, _allowed("true or false (also 1 or 0)")]


@dataclass(frozen=True, slots=True)
class Settings:
    node_env: Literal["development", "production", "test"] = "development"
    host: Annotated[str, _allowed("an interface address or host name", min_length=1)] = "0.0.0.0"  # noqa: S104 - the server is meant to listen on every interface
    port: Port = 3000
    data_dir: Path = Path("./var")
    # Unset: embedded PostgreSQL and Redis under data_dir (development only).
    database_url: (
        Annotated[str, _allowed("a postgresql:// URL", pattern=r"^postgres(ql)?://")] | None
    ) = None
    redis_url: (
        Annotated[
            str,
            _allowed("a redis://, rediss:// or unix:// URL", pattern=r"^(redis|rediss|unix)://"),
        ]
        | None
    ) = None
    database_pool_max: Annotated[int, _allowed("a whole number from 1 to 20", ge=1, le=20)] = 20
    # Connections of the node's shared Redis pool (Socket.IO's manager and the feed lease have
    # their own); a burst past it waits for a free one.
    redis_pool_max: Annotated[int, _allowed("a whole number from 4 to 1000", ge=4, le=1000)] = 32

    jwt_access_secret: str = ""
    jwt_refresh_secret: str = ""
    jwt_access_expires_in: Duration = 900
    jwt_refresh_expires_in: Duration = 7 * 86400
    jwt_issuer: str = "thisthat"
    jwt_audience: str = "thisthat-clients"
    # bcrypt's own bounds; 4 is only sensible in tests.
    bcrypt_cost: Annotated[int, _allowed("a whole number from 4 to 31", ge=4, le=31)] = 12

    cors_origins: tuple[str, ...] = ("http://localhost:5173",)
    # Peers whose X-Forwarded-For is believed (a reverse proxy in front of the server); CIDRs.
    trusted_proxies: tuple[str, ...] = ()

    # What one client may cost a node (docs/protocol.md, "Limits").
    # New Engine.IO connections (websocket or polling handshakes) per client address.
    rate_limit_connections_per_ip: RateLimit = (50, 1)
    # Sockets one user may hold at once, on every node together (storage/socket_slots.py).
    sockets_per_user: Count = 10
    # An Engine.IO connection that has not authenticated (Socket.IO CONNECT) by then is closed.
    socket_auth_timeout_s: Seconds = 10
    # One Socket.IO message, text or binary, and binary attachments per message.
    socket_max_message_bytes: Annotated[
        int, _allowed("a number of bytes from 1024 to 16777216", ge=1024, le=16 * 1024 * 1024)
    ] = 64 * 1024
    socket_max_attachments: Annotated[int, _allowed("a whole number, 0 or more", ge=0)] = 2
    # Outgoing websocket frames below this size are not compressed, even with permessage-deflate.
    ws_compress_min_bytes: Annotated[int, _allowed("a number of bytes, 0 or more", ge=0)] = 1024
    # Above this many unsent bytes, superseded pushes (odds, leaderboards, balance) are skipped for
    # a socket; past the limit the socket is dropped.
    ws_buffer_high_water_bytes: Annotated[
        int, _allowed("a number of bytes, 1024 or more", ge=1024)
    ] = 256 * 1024
    ws_buffer_limit_bytes: Annotated[int, _allowed("a number of bytes, 1024 or more", ge=1024)] = (
        4 * 1024 * 1024
    )
    # What one websocket may send, whatever it sends and signed in or not, paid for before it is
    # decoded: frames a second (pings included) with a burst, and message bytes a second as read,
    # after inflation for compressed ones (a burst holds at least one message of the largest
    # size). Past either the connection is closed, and its address may open no new connection for
    # the window of RATE_LIMIT_CONNECTIONS_PER_IP. A game client sends a few frames and a few KiB
    # a second.
    ws_frames_per_s: Annotated[float, _allowed("frames a second above 0", gt=0)] = 200
    ws_frames_burst: Count = 400
    ws_inflated_bytes_per_s: Annotated[
        int, _allowed("a number of bytes, 1024 or more", ge=1024)
    ] = 256 * 1024
    # While the oldest queued bet has waited longer than the target, new bets are refused at once;
    # a bet that waited past the deadline is refused without being written.
    bet_queue_target_ms: Annotated[int, _allowed("milliseconds above 0", ge=1)] = 50
    bet_queue_deadline_ms: Annotated[int, _allowed("milliseconds above 0", ge=1)] = 2000
    # Bet batches committing at once. Fewer make bigger batches, which cost PostgreSQL and the
    # server less per bet (one round trip, one commit, one write each); two keep one batch
    # filling while another commits. With 100 players betting flat out, 1, 2 and 4 made batches
    # of about 45, 27 and 20 bets, and 2 placed the most.
    bet_workers: Annotated[int, _allowed("a whole number from 1 to 16", ge=1, le=16)] = 2
    # Engine.IO heartbeats: a peer silent for the interval and the timeout together is gone.
    socket_ping_interval_s: Seconds = 25
    socket_ping_timeout_s: Seconds = 20
    # A client that opted in to recovery and reconnects within this many seconds gets its socket
    # back (same id, rooms) and every push it missed; 0 turns recovery off.
    recovery_window_s: Annotated[int, _allowed("seconds from 0 to 3600", ge=0, le=3600)] = 120
    # On SIGTERM: how long in-flight events may take to be answered before sockets are closed.
    shutdown_drain_s: Seconds = 10

    polymarket_base_url: str = "https://clob.polymarket.com"
    polymarket_gamma_url: str = "https://gamma-api.polymarket.com"
    polymarket_api_key: str | None = None
    # polymarket | off | replay:<absolute path of an existing timeline file>
    feed: str = "polymarket"
    feed_markets_interval_s: Seconds = 300
    feed_odds_interval_s: Seconds = 30
    feed_resolution_interval_s: Seconds = 60
    feed_max_markets: Count = 200
    # The poller's Redis lease: renewed every third of it; a dead node's lease lapses after it.
    feed_lease_ttl_s: Seconds = 10
    feed_timeout_s: Seconds = 10
    feed_replay_speed: Annotated[float, _allowed("a speed factor above 0, e.g. 1 or 60", gt=0)] = (
        1.0
    )
    feed_replay_loop: Flag = False
    # The market channel (websocket) the feed node streams books from, with FEED=polymarket.
    polymarket_ws_url: Annotated[str, _allowed("a ws:// or wss:// URL", pattern=r"^wss?://")] = (
        "wss://ws-subscriptions-clob.polymarket.com/ws/market"
    )
    feed_stream: Flag = True
    feed_stream_tokens_per_connection: Annotated[
        int, _allowed("a whole number from 2 to 1000", ge=2, le=1000)
    ] = 200
    # A market the stream has not kept current for this long is polled over REST again.
    feed_stream_stale_s: Seconds = 60
    # At most one `odds` push per market per interval (the latest value wins).
    odds_push_min_interval_ms: Annotated[int, _allowed("milliseconds above 0", ge=1)] = 250
    # Which change of a busy market goes out (game/pacing.py): `first-change`, the first after
    # each interval (no wait for a beat); `beat`, the latest on a beat all markets share (fewest
    # socket writes for players watching several busy markets).
    odds_push_pacing: Literal["first-change", "beat"] = "first-change"
    # Presence: how often each node writes who watches each market and who is online, and reads
    # the counts back; a dead node's share lapses after three intervals.
    presence_interval_s: Seconds = 2
    # Each node pushes a market's new bets to its subscribers at most once per interval, as one
    # batch of the newest (at most the max); 0 turns the pushes off (pages still answer).
    market_activity_push_interval_ms: Annotated[
        int, _allowed("milliseconds from 0 to 60000 (0: no pushes)", ge=0, le=60000)
    ] = 1000
    # A feed shows a few rows at a time: every recipient's frame carries the batch, so a small
    # one keeps what a busy market costs its watchers (and the server's fan-out) small.
    market_activity_push_max_bets: Annotated[
        int, _allowed("a whole number from 1 to 1000", ge=1, le=1000)
    ] = 20

    odds_max_age_s: Seconds = 120
    min_bet_amount: Money = Decimal("10")
    max_bet_amount: Money = Decimal("10000")
    starting_credits: Money = Decimal("1000")
    daily_reward_credits: Money = Decimal("100")
    max_balance: Money = SCHEMA_BALANCE_CEILING

    rate_limit_enabled: Flag = True
    # Limits: (requests, window seconds). Per IP and per username for auth, per user for events.
    rate_limit_signup_per_ip: RateLimit = (10, 3600)
    # Every login attempt from one address: a flood guard that only ever slows that address.
    rate_limit_login_per_ip: RateLimit = (30, 300)
    # Wrong passwords for one username from one address (fixed window): stops guessing there.
    rate_limit_login_per_username_ip: RateLimit = (10, 300)
    # Wrong passwords for one username from every address, draining `count` per window: the
    # ceiling for distributed guessing. Past it, only addresses the owner signed in from get in.
    rate_limit_login_per_username: RateLimit = (50, 3600)
    rate_limit_refresh_per_ip: RateLimit = (60, 60)
    # Wrong ADMIN_TOKEN or METRICS_TOKEN presentations from one address (fixed window); past it
    # every presentation from there gets 429 until the window ends.
    rate_limit_operator_token_per_ip: RateLimit = (10, 300)
    rate_limit_events_per_user: RateLimit = (50, 1)
    # Bets get their own, larger budget per user: a load tester's player bets fast.
    rate_limit_bets_per_user: RateLimit = (20, 1)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # The read-only admin view at /admin is off unless this is set.
    admin_token: str | None = None
    # Bearer token for /metrics and /readyz's details. Unset: open outside production, and in
    # production /metrics answers 404 and /readyz only its status.
    metrics_token: str | None = None
    # GET /loadtest/limits, the limits a load client checks its plan against before it starts
    # (read like /metrics: METRICS_TOKEN when set); off, it answers 404.
    loadtest_limits_endpoint: Flag = False
    # A spent refresh token presented again within this many seconds (a retry, two tabs racing)
    # gets the same new pair back instead of revoking the login; 0 turns the grace off.
    refresh_reuse_grace_s: Annotated[
        int, _allowed("a whole number of seconds from 0 to 60", ge=0, le=60)
    ] = 10
    # Seconds before expiry at which a socket gets `auth:expiring`.
    token_expiry_warning_s: Annotated[
        int, _allowed("a whole number of seconds, 0 or more", ge=0)
    ] = 60

    @property
    def is_production(self) -> bool:
        return self.node_env == "production"

    @property
    def uses_embedded_services(self) -> bool:
        return self.database_url is None or self.redis_url is None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


@functools.cache
def _field_types() -> dict[str, Any]:
    return get_type_hints(Settings, include_extras=True)


def allowed_values(name: str) -> str:
    """What a field accepts, in words, for the one-line error message."""
    hint = _field_types()[name]
    for option in get_args(hint) if get_origin(hint) is not Annotated else (hint,):
        if get_origin(option) is Annotated:
            for meta in option.__metadata__:
                if isinstance(meta, msgspec.Meta) and meta.description:
                    return meta.description
        if get_origin(option) is Literal:
            return "one of " + ", ".join(get_args(option))
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(get_args(hint))
    return {
        "data_dir": "a folder path",
        "cors_origins": "comma-separated origins such as https://play.example",
        "trusted_proxies": "comma-separated addresses or CIDRs such as 10.0.0.0/8, 127.0.0.1",
        "feed": "polymarket, off, or replay:<path of an existing timeline file>",
    }.get(name, "a string")


def _refuse(name: str, raw: Any, origin: str, reason: str | None = None) -> SettingsError:
    return SettingsError(
        f"{name.upper()}={raw!r}{origin} is not allowed: expected {reason or allowed_values(name)}"
    )


def _prepare(name: str, raw: Any, origin: str) -> Any:
    """Turn the text forms (durations, count/window, comma lists, FEED) into msgspec's input."""
    if name.endswith("_expires_in"):
        try:
            return parse_duration(raw)
        except SettingsError:
            raise _refuse(name, raw, origin) from None
    if name.startswith("rate_limit_") and name != "rate_limit_enabled":
        match = _RATE.match(str(raw)) if isinstance(raw, str) else None
        parts = (match.group(1), match.group(2)) if match else raw
        if not isinstance(parts, (list, tuple)) or len(parts) != 2:
            raise _refuse(name, raw, origin)
        try:
            count, window = (int(part) for part in parts)
        except (TypeError, ValueError):
            raise _refuse(name, raw, origin) from None
        if count <= 0 or window <= 0:
            raise _refuse(name, raw, origin)
        return (count, window)
    if name in {"cors_origins", "trusted_proxies"}:
        items = raw if isinstance(raw, list) else str(raw).split(",")
        cleaned = [str(item).strip() for item in items if str(item).strip()]
        if name == "trusted_proxies":
            try:
                return [str(ipaddress.ip_network(item, strict=False)) for item in cleaned]
            except ValueError as error:
                raise _refuse(name, raw, origin, f"{allowed_values(name)} ({error})") from None
        return cleaned
    if name == "log_level":
        return str(raw).strip().upper()
    if name == "feed":
        return _feed(str(raw).strip(), origin)
    if _field_types()[name] is Money or name.endswith(("_amount", "_credits", "_balance")):
        return str(raw)  # TOML numbers too: never through float
    if isinstance(raw, str):
        return raw.strip()
    return raw


def _feed(value: str, origin: str) -> str:
    if value in {"polymarket", "off"}:
        return value
    if not value.startswith("replay:") or not value.removeprefix("replay:").strip():
        raise _refuse("feed", value, origin)
    given = Path(value.removeprefix("replay:").strip()).expanduser()
    for candidate in (given, _PACKAGE_ROOT / given):
        if candidate.is_file():
            return f"replay:{candidate.resolve()}"
    raise _refuse("feed", value, origin, f"an existing timeline file; {given} does not exist")


def _decode(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


def _explain(
    error: msgspec.ValidationError, raw: Mapping[str, Any], origin: Mapping[str, str]
) -> SettingsError:
    """msgspec says "Expected `int` >= 1 - at `$.port`"; the operator gets PORT, the value, the rule."""
    text = str(error)
    name = text.rpartition(" - at `$.")[2].rstrip("`").split("[")[0]
    if name not in raw:
        return SettingsError(f"configuration: {text}")
    return _refuse(name, raw[name], origin.get(name, ""))


def load_settings(
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults <- THISTHAT_CONFIG's TOML file <- environment <- explicit overrides (tests)."""
    environ = os.environ if environ is None else environ
    names = [spec.name for spec in fields(Settings)]
    file_values: dict[str, Any] = {}
    path = config_path or (
        Path(environ["THISTHAT_CONFIG"]) if environ.get("THISTHAT_CONFIG") else None
    )
    if path is not None:
        if not path.is_file():
            raise SettingsError(
                f"THISTHAT_CONFIG={str(path)!r} is not allowed: expected an existing TOML file"
            )
        try:
            with path.open("rb") as handle:
                file_values = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(
                f"THISTHAT_CONFIG={str(path)!r} is not valid TOML: {error}"
            ) from None
        unknown = set(file_values) - set(names)
        if unknown:
            hints = [
                f"{key} (keys are lowercase: {key.lower()})" if key.lower() in names else key
                for key in sorted(unknown)
            ]
            raise SettingsError(f"unknown keys in {path}: {', '.join(hints)}")

    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name in names:
        if name in file_values:
            raw[name], origin[name] = file_values[name], f" (in {path})"
        env_value = environ.get(name.upper())
        if env_value is not None and env_value.strip() != "":
            raw[name], origin[name] = env_value, ""
    # Every bad value is named, one line each, not only the first.
    problems: list[str] = []
    prepared: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            prepared[name] = _prepare(name, value, origin[name])
            msgspec.convert({name: prepared[name]}, Settings, strict=False, dec_hook=_decode)
        except SettingsError as error:
            problems.append(str(error))
        except msgspec.ValidationError as error:
            problems.append(str(_explain(error, raw, origin)))
    if problems:
        raise SettingsError("\n".join(problems))
    try:
        settings = msgspec.convert(prepared, Settings, strict=False, dec_hook=_decode)
    except msgspec.ValidationError as error:
        raise _explain(error, raw, origin) from None
    _check_values(settings, raw, origin)
    if overrides:
        settings = settings.replace(**overrides)
    _check(settings)
    return _with_development_secrets(settings)


def _check_values(settings: Settings, raw: Mapping[str, Any], origin: Mapping[str, str]) -> None:
    """What msgspec's constraints cannot say: finite numbers, money with cents, the ceiling."""
    for spec in fields(Settings):
        value = getattr(settings, spec.name)
        if spec.name not in raw:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise _refuse(spec.name, raw[spec.name], origin[spec.name])
        if isinstance(value, Decimal) and (
            not value.is_finite() or value <= 0 or value.as_tuple().exponent < -2  # type: ignore[operator]
        ):
            raise _refuse(spec.name, raw[spec.name], origin[spec.name])
    if settings.max_balance > SCHEMA_BALANCE_CEILING:
        raise _refuse(
            "max_balance",
            raw["max_balance"],
            origin["max_balance"],
            f"an amount above 0 and at most {SCHEMA_BALANCE_CEILING} (the database's balance ceiling)",
        )


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
        samples = [
            name.upper()
            for name in SECRETS
            if SAMPLE_SECRET_MARK in str(getattr(settings, name) or "").lower()
        ]
        if samples:
            raise SettingsError(
                f"NODE_ENV=production refuses the sample values of deploy/.env.example in "
                f"{', '.join(samples)}: set real secrets (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
    for name in ("admin_token", "metrics_token"):
        token = getattr(settings, name)
        if token and len(token) < OPERATOR_TOKEN_MIN_CHARS:
            raise SettingsError(
                f"{name.upper()} must be at least {OPERATOR_TOKEN_MIN_CHARS} characters long "
                f"(it has {len(token)}); make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
    if "*" in settings.cors_origins:
        raise SettingsError("CORS_ORIGINS must list origins; '*' is not allowed")
    if settings.min_bet_amount > settings.max_bet_amount:
        raise SettingsError(
            f"MIN_BET_AMOUNT={str(settings.min_bet_amount)!r} is above "
            f"MAX_BET_AMOUNT={str(settings.max_bet_amount)!r}"
        )
    if settings.starting_credits > settings.max_balance:
        raise SettingsError(
            f"STARTING_CREDITS={str(settings.starting_credits)!r} is above "
            f"MAX_BALANCE={str(settings.max_balance)!r}"
        )


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


@functools.cache
def proxy_networks(
    cidrs: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """TRUSTED_PROXIES as networks, parsed once per distinct setting."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


__all__ = [
    "LOG_LEVELS",
    "SCHEMA_BALANCE_CEILING",
    "Settings",
    "SettingsError",
    "load_settings",
    "parse_duration",
    "proxy_networks",
]


# The settings and the game's rules drawn from them, for everything the app factory wires.
SETTINGS: Final = web.AppKey("settings", Settings)
RULES: Final = web.AppKey("rules", GameRules)
