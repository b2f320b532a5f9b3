"""`thisthat loadtest` / `python -m loadtest`: options, players, the run, and the report."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from loadtest.plan import DEFAULT_MIX, LoadPlan, PlanError, parse_mix, parse_range
from loadtest.system import raise_open_file_limit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    players = parser.add_mutually_exclusive_group(required=True)
    players.add_argument(
        "--players-file", type=Path, help="players.json written by `thisthat seed`"
    )
    players.add_argument(
        "--signup",
        type=int,
        metavar="N",
        help="sign N players up through REST first (the server needs RATE_LIMIT_SIGNUP_PER_IP "
        "of N or more, or RATE_LIMIT_ENABLED=false)",
    )
    parser.add_argument(
        "--players", type=int, default=0, help="use only the first N players of the file"
    )
    parser.add_argument(
        "--url",
        default=None,
        help="server base URL (default: the file's baseUrl, else http://127.0.0.1:3000)",
    )
    parser.add_argument(
        "--mode",
        choices=["open", "closed", "idle"],
        default="open",
        help="open: arrivals at --rate; closed: next request when the ack arrives; "
        "idle: connect, subscribe, only listen",
    )
    parser.add_argument(
        "--rate", type=float, default=100.0, help="open loop: requests per second, all players"
    )
    parser.add_argument(
        "--poisson", action="store_true", help="open loop: Poisson arrivals instead of fixed"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="closed loop: requests in flight (default: players)",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument(
        "--warmup", type=float, default=0.0, help="seconds of load before measuring"
    )
    parser.add_argument(
        "--mix", default=DEFAULT_MIX, help=f"operation weights (default {DEFAULT_MIX})"
    )
    parser.add_argument("--amount", default="10-50", help="bet amount range, whole credits")
    parser.add_argument("--max-slippage", type=float, default=0.05)
    parser.add_argument(
        "--subscribe", type=int, default=3, help="markets each player subscribes to"
    )
    parser.add_argument(
        "--markets", default="", help="comma-separated market ids every player subscribes to"
    )
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="client processes"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds before an ack counts as TIMEOUT"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write the JSON result (and PNG) here"
    )
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="do not offer permessage-deflate (real clients offer it; this measures without)",
    )
    parser.add_argument(
        "--audit",
        action="store_true",
        help="afterwards, audit the loaded server's databases (`thisthat audit --server URL`: "
        "the same DATABASE_URL and REDIS_URL as the server, or its DATA_DIR); checked first",
    )
    parser.add_argument(
        "--skip-preflight",
        action="store_true",
        help="start without checking the plan against the server's limits (GET /loadtest/limits, "
        "which the server publishes with LOADTEST_LIMITS_ENDPOINT=true)",
    )


def load_players(path: Path, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    document = orjson.loads(path.read_bytes())
    players = document["players"][:limit] if limit else document["players"]
    return players, document.get("baseUrl")


async def sign_up(base_url: str, count: int, concurrency: int = 20) -> list[dict[str, Any]]:
    """New players through POST /auth/signup (bcrypt on the server: slow by design)."""
    tag = secrets.token_hex(3)
    password = secrets.token_urlsafe(12)
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as http:

        async def one(index: int) -> dict[str, Any]:
            async with (
                gate,
                http.post(
                    f"{base_url}/auth/signup",
                    json={"username": f"lt{tag}_{index}", "password": password},
                ) as response,
            ):
                body = await response.json()
                if response.status != 201:
                    raise RuntimeError(f"signup failed ({response.status}): {body}")
                return {
                    "id": body["user"]["id"],
                    "username": body["user"]["username"],
                    "accessToken": body["accessToken"],
                }

        return list(await asyncio.gather(*(one(index) for index in range(count))))


def run_audit(base_url: str, *, resolve_only: bool = False) -> tuple[int, str]:
    """`thisthat audit --server <base_url>`: the databases of the server this run loads, found
    from this environment (DATABASE_URL and REDIS_URL, or DATA_DIR); it never starts new ones.
    Returns its exit code and what it printed."""
    command = [sys.executable, "-m", "server.cli", "audit", "--server", base_url]
    if resolve_only:
        command.append("--resolve-only")
    outcome = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - our own interpreter and arguments
    text = "\n".join(part for part in (outcome.stdout.strip(), outcome.stderr.strip()) if part)
    return outcome.returncode, text


async def command(args: argparse.Namespace) -> int:
    # Imported here so `thisthat --help` works without the loadtest extra (hdrh).
    from loadtest.plots import write_plots
    from loadtest.runner import format_report, run_load

    signups = 0
    if args.players_file:
        players, file_url = load_players(args.players_file, args.players)
        base_url = args.url or file_url or "http://127.0.0.1:3000"
    else:
        base_url = args.url or "http://127.0.0.1:3000"
        # Stand-ins until the preflight has passed: the sign-ups count against the server's limits.
        signups = args.signup
        players = [{"id": f"signup-{index}"} for index in range(signups)]
    if not players:
        print("no players to run", file=sys.stderr)
        return 2
    try:
        plan = LoadPlan(
            base_url=base_url.rstrip("/"),
            players=players,
            mode=args.mode,
            rate=args.rate,
            poisson=args.poisson,
            concurrency=args.concurrency,
            duration_s=args.duration,
            warmup_s=args.warmup,
            mix=parse_mix(args.mix),
            amount=parse_range(args.amount),
            max_slippage=args.max_slippage,
            subscribe=args.subscribe,
            market_ids=tuple(market for market in args.markets.split(",") if market),
            timeout_s=args.timeout,
            deflate=not args.no_deflate,
            run_tag=secrets.token_hex(4),
        )
    except PlanError as error:
        print(f"loadtest: {error}", file=sys.stderr)
        return 2
    if args.audit:
        code, text = run_audit(plan.base_url, resolve_only=True)
        if code != 0:
            print(f"loadtest --audit: {text.splitlines()[-1] if text else code}", file=sys.stderr)
            return 2
    if not await preflight(plan, signups, skip=args.skip_preflight):
        return 2
    if signups:
        print(f"signing up {signups} players at {plan.base_url} ...", file=sys.stderr)
        plan = dataclasses.replace(plan, players=await sign_up(plan.base_url, signups))
    report = await run_load(plan, args.processes)
    print(format_report(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        chart = write_plots(report, args.out)
        print(
            f"result: {args.out}"
            + (f", chart: {chart}" if chart else " (no chart: install the plots extra)")
        )
    status = 1 if report["problems"] else 0
    if args.audit:
        code, text = run_audit(plan.base_url)
        print(text)
        if code != 0:
            status = 1
    return status


async def preflight(plan: LoadPlan, signups: int, *, skip: bool) -> bool:
    """Whether the run may start: its plan fits the server's limits, or the check was skipped.
    Each problem is one line on stderr naming the setting or option to change."""
    from loadtest.preflight import PreflightRefused, metrics_token, print_preflight, run_preflight

    if skip:
        print(
            "preflight: skipped (--skip-preflight): the plan is not checked against the server's "
            "limits; a limit the run meets shows only in the verdict",
            file=sys.stderr,
        )
        return True
    try:
        found = await run_preflight(plan, signups=signups, token=metrics_token())
    except PreflightRefused as refusal:
        print(f"preflight: {refusal}", file=sys.stderr)
        return False
    print_preflight(found, lambda line: print(line, file=sys.stderr))
    if found.problems:
        print(
            f"loadtest: not started ({len(found.problems)} problem(s) above); fix them, or pass "
            "--skip-preflight to run anyway",
            file=sys.stderr,
        )
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="thisthat loadtest", description="drive the server with virtual players"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    raise_open_file_limit()
    return uvloop.run(command(args))
