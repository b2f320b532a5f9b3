"""`thisthat serve|migrate|audit|...`: the command line of the server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator

import asyncpg
import uvloop

from server.logs import configure_logging
from server.settings import Settings, SettingsError, load_settings
from storage import audit, database
from storage.embedded import EmbeddedServices

logger = logging.getLogger("thisthat.cli")


@contextlib.contextmanager
def services(settings: Settings) -> Iterator[Settings]:
    """Settings with DATABASE_URL/REDIS_URL filled in, starting embedded services for unset ones."""
    if not settings.uses_embedded_services:
        yield settings
        return
    embedded = EmbeddedServices(settings.data_dir)
    logger.info("starting embedded services", extra={"dataDir": str(settings.data_dir)})
    database_url, redis_url = embedded.start(settings.database_url, settings.redis_url)
    try:
        yield settings.replace(database_url=database_url, redis_url=redis_url)
    finally:
        embedded.stop()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.app import create_app

    with services(settings) as resolved:
        app = create_app(resolved)
        logger.info("serving", extra={"host": resolved.host, "port": resolved.port, "feed": resolved.feed})
        web.run_app(
            app, host=resolved.host, port=resolved.port, print=None,
            access_log=None, shutdown_timeout=5, backlog=2048,
        )
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as resolved:
        assert resolved.database_url is not None
        applied = asyncio.run(database.migrate(resolved.database_url))
    print(f"applied {len(applied)} migration(s): {applied}" if applied else "schema is up to date")
    return 0


async def _audit(settings: Settings) -> list[audit.Violation]:
    assert settings.database_url is not None
    connection = await asyncpg.connect(settings.database_url)
    try:
        return await audit.check_ledger(connection, settings.max_balance)
    finally:
        await connection.close()


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as resolved:
        violations = asyncio.run(_audit(resolved))
    for violation in violations:
        print(violation)
    if violations:
        print(f"audit FAILED: {len(violations)} violation(s)")
        return 1
    print("audit passed: every ledger invariant holds")
    return 0


COMMANDS = {"serve": cmd_serve, "migrate": cmd_migrate, "audit": cmd_audit}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thisthat", description="ThisThat game server")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the server (embedded PostgreSQL/Redis when their URLs are unset)")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("audit", help="check the ledger invariants; exits 1 on any violation")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"thisthat: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    uvloop.install()
    return COMMANDS[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
