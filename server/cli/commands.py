"""`thisthat serve|migrate|audit|...`: the command line of the server.

Each command imports what it needs when it runs, so a bare `pip install thisthat` (no extras)
serves, and only `thisthat loadtest` asks for the loadtest extra.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from server.runtime.logs import configure_logging
from server.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    import asyncpg
    import redis.asyncio as redis

    from storage import audit

from storage.embedded import EmbeddedServiceError, EmbeddedServices, read_state

logger = logging.getLogger("thisthat.cli")


@contextlib.contextmanager
def embedded_services(settings: Settings) -> Iterator[tuple[Settings, EmbeddedServices | None]]:
    """Settings with DATABASE_URL/REDIS_URL filled in: unset ones are the embedded services a
    running process already started under DATA_DIR, or ones started (and later stopped) here.
    Both answer before this yields, or `StartupError` says which one does not."""
    from server.cli.startup import check_database, check_redis

    embedded: EmbeddedServices | None = None
    resolved = settings
    if settings.uses_embedded_services:
        embedded = EmbeddedServices(settings.data_dir)
        database_url, redis_url = embedded.start(settings.database_url, settings.redis_url)
        resolved = settings.replace(database_url=database_url, redis_url=redis_url)
        logger.info(
            "attached to the embedded services running under DATA_DIR"
            if not embedded.owns_services
            else "started embedded services",
            extra={"dataDir": str(settings.data_dir)},
        )
    try:
        assert resolved.database_url is not None
        assert resolved.redis_url is not None
        asyncio.run(check_database(resolved.database_url))
        asyncio.run(check_redis(resolved.redis_url))
        yield resolved, embedded
    finally:
        if embedded is not None:
            embedded.stop()


@contextlib.contextmanager
def services(settings: Settings) -> Iterator[Settings]:
    with embedded_services(settings) as (resolved, _):
        yield resolved


def already_serving(settings: Settings) -> tuple[int, int] | None:
    """(pid, port) of a `thisthat serve` that owns the embedded services of this DATA_DIR."""
    if not settings.uses_embedded_services:
        return None  # nodes sharing real servers may share a folder
    state = read_state(settings.data_dir)
    return state.running_server if state is not None else None


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.check_config:
        print(f"configuration is valid (NODE_ENV={settings.node_env}, FEED={settings.feed})")
        return 0
    from server.app import create_app
    from server.cli.startup import bind_listeners, masked_url, run_server
    from server.mirror.runner import RESET_REPLAY

    running = already_serving(settings)
    if running is not None:
        print(
            f"thisthat: already running (pid {running[0]}, port {running[1]}) "
            f"with DATA_DIR={settings.data_dir}; stop it first or use another DATA_DIR",
            file=sys.stderr,
        )
        return 1
    sockets = bind_listeners(settings.host, settings.port)
    try:
        with embedded_services(settings) as (resolved, embedded):
            assert resolved.database_url is not None
            assert resolved.redis_url is not None
            logger.info(
                "services",
                extra={
                    "DATABASE_URL": masked_url(resolved.database_url),
                    "REDIS_URL": masked_url(resolved.redis_url),
                    "feed": resolved.feed,
                },
            )
            app = create_app(resolved)
            app[RESET_REPLAY] = args.reset_replay

            def listening(port: int) -> None:
                if embedded is not None and embedded.owns_services:
                    embedded.record_server(os.getpid(), resolved.host, port)

            asyncio.run(run_server(app, sockets, listening))
    finally:
        for sock in sockets:
            sock.close()
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from storage import database

    with services(settings) as resolved:
        assert resolved.database_url is not None
        applied = asyncio.run(database.migrate(resolved.database_url))
    print(f"applied {len(applied)} migration(s): {applied}" if applied else "schema is up to date")
    return 0


@contextlib.asynccontextmanager
async def connections(settings: Settings) -> AsyncIterator[tuple[asyncpg.Connection, redis.Redis]]:
    """One PostgreSQL connection and one Redis client, for the offline commands."""
    import asyncpg
    import redis.asyncio as redis

    assert settings.database_url is not None
    assert settings.redis_url is not None
    connection = await asyncpg.connect(settings.database_url, server_settings={"timezone": "UTC"})
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        yield connection, client
    finally:
        await client.aclose()
        await connection.close()


async def _audit(settings: Settings) -> list[audit.Violation]:
    from storage import audit

    async with connections(settings) as (connection, client):
        now = datetime.now(UTC)
        violations = await audit.check_all(connection, client, settings.max_balance, now)
        await audit.record_result(client, len(violations), now)
        return violations


class AuditTargetError(Exception):
    """There is no database to audit where the settings point; the message says how to name one."""


AUDIT_TARGET_HELP: Final = (
    "set DATA_DIR to the server's data folder, or DATABASE_URL and REDIS_URL to its databases"
)


def served_databases(settings: Settings, server_url: str) -> Settings:
    """Settings naming the databases of the server at `server_url`, without starting anything:
    DATABASE_URL and REDIS_URL when both are set, else the embedded services of the
    `thisthat serve` running on DATA_DIR, which must listen on that URL's port."""
    if not settings.uses_embedded_services:
        return settings
    folder = settings.data_dir.resolve()
    state = read_state(settings.data_dir)
    running = state.running_server if state is not None else None
    if state is None or running is None:
        raise AuditTargetError(
            f"no running `thisthat serve` keeps its data under DATA_DIR={folder}; "
            + AUDIT_TARGET_HELP
        )
    address = urlsplit(server_url)
    port = address.port or (443 if address.scheme in ("https", "wss") else 80)
    if running[1] != port:
        raise AuditTargetError(
            f"the server running on DATA_DIR={folder} listens on port {running[1]}, "
            f"not at {server_url}; " + AUDIT_TARGET_HELP
        )
    database_url = settings.database_url or state.database_url
    redis_url = settings.redis_url or state.redis_url
    if database_url is None or redis_url is None:
        raise AuditTargetError(f"DATA_DIR={folder} records no database; " + AUDIT_TARGET_HELP)
    return settings.replace(database_url=database_url, redis_url=redis_url)


def stored_databases(settings: Settings) -> contextlib.AbstractContextManager[Settings]:
    """The databases to audit without `--server`: the configured ones, or the embedded services
    of DATA_DIR, which must hold a database already (a new, empty one has nothing to audit)."""
    if (
        settings.database_url is None
        and not (settings.data_dir / "postgres" / "PG_VERSION").exists()
    ):
        raise AuditTargetError(
            f"no database under DATA_DIR={settings.data_dir.resolve()}; " + AUDIT_TARGET_HELP
        )
    return services(settings)


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    import asyncpg

    try:
        if args.server is not None:
            target: contextlib.AbstractContextManager[Settings] = contextlib.nullcontext(
                served_databases(settings, args.server)
            )
        else:
            target = stored_databases(settings)
        with target as resolved:
            if args.resolve_only:
                print(f"audit would check the databases of {args.server or 'DATA_DIR'}")
                return 0
            violations = asyncio.run(_audit(resolved))
    except AuditTargetError as error:
        print(f"thisthat audit: {error}", file=sys.stderr)
        return 2
    except asyncpg.UndefinedTableError:
        print(
            "thisthat audit: the database has no ThisThat tables (not migrated); "
            + AUDIT_TARGET_HELP,
            file=sys.stderr,
        )
        return 2
    for violation in violations:
        print(violation)
    if violations:
        print(f"audit FAILED: {len(violations)} violation(s)")
        return 1
    print("audit passed: every ledger and leaderboard invariant holds")
    return 0


async def _rebuild_leaderboards(settings: Settings) -> dict[str, int]:
    from storage import leaderboards

    async with connections(settings) as (connection, client):
        return await leaderboards.rebuild(connection, client, datetime.now(UTC))


def cmd_leaderboard(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as resolved:
        buckets = asyncio.run(_rebuild_leaderboards(resolved))
    for bucket, members in buckets.items():
        print(f"{bucket}: {members} player(s)")
    print(f"rebuilt {len(buckets)} leaderboard bucket(s) from the ledger")
    return 0


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    from decimal import Decimal

    from server.cli.seed import SeedError, SeedPlan, seed, write_players_file
    from server.settings import parse_duration

    plan = SeedPlan(
        players=args.players,
        prefix=args.prefix,
        password=args.password,
        credits=Decimal(args.credits) if args.credits else None,
        token_ttl_s=parse_duration(args.token_ttl),
        batch=args.batch,
        reset=args.reset,
    )
    with services(settings) as resolved:
        try:
            document = asyncio.run(seed(resolved, plan, args.base_url))
        except SeedError as error:
            print(f"thisthat seed: {error}", file=sys.stderr)
            return 1
    write_players_file(document, args.out)
    print(
        f"seeded {len(document['players'])} load-test player(s); credentials and tokens in {args.out}"
    )
    return 0


# The one install command of the load client and its charts, as docs/load-testing.md gives it:
# editable, so it keeps the checkout's install that `make run` made.
LOADTEST_INSTALL: Final = ".venv/bin/pip install -e '.[loadtest,plots]'"


def cmd_loadtest(args: argparse.Namespace) -> int:
    """The load client is its own package (`loadtest`), installed with the loadtest extra; the
    server only hands it the arguments, so the server image carries none of it. It reads no
    server settings (it talks to the server over sockets), so it writes nothing under DATA_DIR."""
    import importlib.util

    if importlib.util.find_spec("hdrh") is None or importlib.util.find_spec("loadtest") is None:
        print(
            "thisthat loadtest needs the loadtest extra (module hdrh); from the repository: "
            f"{LOADTEST_INSTALL}",
            file=sys.stderr,
        )
        return 2
    from loadtest.cli import main as loadtest_main

    return loadtest_main(args.loadtest_args)


COMMANDS = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "audit": cmd_audit,
    "leaderboard": cmd_leaderboard,
    "seed": cmd_seed,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thisthat", description="ThisThat game server")
    sub = parser.add_subparsers(dest="command", required=True)
    serving = sub.add_parser(
        "serve", help="run the server (embedded PostgreSQL/Redis when their URLs are unset)"
    )
    serving.add_argument(
        "--check-config",
        action="store_true",
        help="only validate the settings: exit 0 when valid, 2 (one line per problem) when not",
    )
    serving.add_argument(
        "--reset-replay",
        action="store_true",
        help="with FEED=replay:<file>, play the timeline from its beginning as new markets, "
        "even if this data folder has played it before",
    )
    sub.add_parser("migrate", help="apply database migrations")
    auditing = sub.add_parser(
        "audit", help="check the ledger and leaderboard invariants; exits 1 on any violation"
    )
    auditing.add_argument(
        "--server",
        metavar="URL",
        default=None,
        help="audit the databases of the server at URL: DATABASE_URL and REDIS_URL when set, "
        "else those of the `thisthat serve` running on DATA_DIR at that port; starts nothing "
        "and exits 2 with one line when there is none",
    )
    auditing.add_argument(
        "--resolve-only",
        action="store_true",
        help="only find the databases to audit (exit 0) or say why there are none (exit 2)",
    )
    board = sub.add_parser("leaderboard", help="leaderboard maintenance")
    board.add_argument(
        "action", choices=["rebuild"], help="rebuild: recompute every board from the ledger"
    )
    seeding = sub.add_parser(
        "seed", help="create load-test players fast and write their tokens to a file"
    )
    seeding.add_argument("--players", type=int, required=True, help="how many players")
    seeding.add_argument(
        "--out", type=Path, default=Path("players.json"), help="players file to write"
    )
    seeding.add_argument(
        "--reset", action="store_true", help="first delete earlier load-test players (only them)"
    )
    seeding.add_argument("--prefix", default="loadtest_", help="username prefix")
    seeding.add_argument(
        "--password", default="loadtest-password", help="the players' shared password"
    )
    seeding.add_argument(
        "--credits", default=None, help="starting credits (default STARTING_CREDITS)"
    )
    seeding.add_argument("--token-ttl", default="2h", help="access token lifetime, e.g. 2h")
    seeding.add_argument("--batch", type=int, default=1000, help="players per insert transaction")
    seeding.add_argument(
        "--base-url", default=None, help="server URL to record in the file for loadtest"
    )
    # The load client parses its own options (`thisthat loadtest --help`).
    sub.add_parser(
        "loadtest", help="drive the server with virtual players over websockets", add_help=False
    )
    return parser


def tokenless_secrets(command: str) -> dict[str, Any]:
    """`audit` signs and verifies no token: when the JWT secrets are unset it gets throwaway
    ones, instead of development secrets written to DATA_DIR/jwt-secrets.toml (which would leave
    a data folder behind wherever it is run)."""
    if command != "audit":
        return {}
    return {
        "jwt_access_secret": os.environ.get("JWT_ACCESS_SECRET") or secrets.token_urlsafe(48),
        "jwt_refresh_secret": os.environ.get("JWT_REFRESH_SECRET") or secrets.token_urlsafe(48),
    }


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    if args.command == "loadtest":
        args.loadtest_args = rest
    elif rest:
        build_parser().error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "loadtest":
        return cmd_loadtest(args)
    try:
        settings = load_settings(**tokenless_secrets(args.command))
    except SettingsError as error:
        # One line per problem: an operator fixes them all in one go.
        for problem in str(error).splitlines():
            print(f"thisthat: configuration error: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    import uvloop

    uvloop.install()
    from server.cli.startup import StartupError

    try:
        return COMMANDS[args.command](settings, args)
    except (StartupError, EmbeddedServiceError) as error:
        print(f"thisthat: {error}", file=sys.stderr)
        return 1
