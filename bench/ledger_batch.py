"""The ledger's write path alone: `place_bets` driven directly, bets/s and PostgreSQL CPU per bet.

Several connections each place batches of bets (random players, random open markets) for a
fixed time, as the server's batch workers do under load. PostgreSQL's CPU is read from
/proc/<pid>/stat of the postmaster and its children before and after, so the figure is what the
database spent, whatever else runs on the machine.

    .venv/bin/python -m bench.ledger_batch --seconds 10 --batch 50 --connections 4
    .venv/bin/python -m bench.ledger_batch --costs   # what each index, key and check costs per bet

`--costs` repeats the run on a fresh database with one index, foreign key or check dropped at a
time, and prints the CPU per bet each one saves. It prints figures only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import asyncpg

from game.bets import BetRequest
from game.markets import Side
from game.rules import GameRules
from storage import bets, database
from storage.embedded import EmbeddedServices

RULES = GameRules(odds_max_age_s=24 * 3600.0)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

SEED_USERS = """
WITH u AS (
    INSERT INTO users (username, password_hash, balance)
    SELECT 'bench_' || n, 'x', 100000 FROM generate_series(1, $1) AS n
    RETURNING id, balance
)
INSERT INTO ledger (user_id, kind, amount, balance_after) SELECT id, 'signup_bonus', balance, balance FROM u
"""

SEED_MARKETS = """
INSERT INTO markets (source_id, question, this_label, that_label, this_token_id, that_token_id,
                     this_odds, that_odds, odds_updated_at, ends_at)
SELECT 'bench-' || n, 'Bench market ' || n, 'Yes', 'No', 'y' || n, 'n' || n, 0.5, 0.5, now(),
       now() + interval '1 day'
FROM generate_series(1, $1) AS n
"""

# A history to bet on top of, so the planner sees tables of a live game, not empty ones.
SEED_BETS = """
INSERT INTO bets (user_id, market_id, client_bet_id, side, amount, odds, potential_payout)
SELECT u.id, (SELECT id FROM markets ORDER BY random() + n * 0 LIMIT 1), 'seed-' || n, 'this',
       10, 0.5, 20
FROM users u CROSS JOIN generate_series(1, $1) AS n
"""
SEED_STAKES = """
INSERT INTO ledger (user_id, kind, amount, balance_after, bet_id)
SELECT user_id, 'bet_stake', -amount, 100000, id FROM bets
"""

# Each row: what is dropped, and the statement that drops it (for the --costs table).
DROPPABLE: list[tuple[str, str]] = [
    ("bets_user_placed (index)", "DROP INDEX bets_user_placed"),
    ("bets_market_placed (index)", "DROP INDEX bets_market_placed"),
    ("bets_settled_at (partial index)", "DROP INDEX bets_settled_at"),
    (
        "bets (user_id, client_bet_id) unique",
        "ALTER TABLE bets DROP CONSTRAINT bets_user_id_client_bet_id_key",
    ),
    ("bets.user_id -> users (FK)", "ALTER TABLE bets DROP CONSTRAINT bets_user_id_fkey"),
    ("markets_keep_bets (delete trigger)", "DROP TRIGGER markets_keep_bets ON markets"),
    (
        "bets client_bet_id regex (check)",
        "ALTER TABLE bets DROP CONSTRAINT bets_client_bet_id_check",
    ),
    ("ledger_user_seq (index)", "DROP INDEX ledger_user_seq"),
    ("ledger_one_stake_per_bet (unique)", "DROP INDEX ledger_one_stake_per_bet"),
    ("ledger_one_settlement_per_bet (unique)", "DROP INDEX ledger_one_settlement_per_bet"),
    ("ledger.user_id -> users (FK)", "ALTER TABLE ledger DROP CONSTRAINT ledger_user_id_fkey"),
    ("bets_keep_ledger (delete trigger)", "DROP TRIGGER bets_keep_ledger ON bets"),
    ("ledger_no_update (trigger)", "DROP TRIGGER ledger_no_update ON ledger"),
    (
        "bets amount/odds/payout/status (checks)",
        "ALTER TABLE bets DROP CONSTRAINT bets_amount_check, DROP CONSTRAINT bets_odds_check, DROP CONSTRAINT bets_potential_payout_check, DROP CONSTRAINT bets_status_check, DROP CONSTRAINT bets_side_check, DROP CONSTRAINT bets_check",
    ),
    (
        "ledger kind/amount (checks)",
        "ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check, DROP CONSTRAINT ledger_check, DROP CONSTRAINT ledger_check1, DROP CONSTRAINT ledger_balance_after_check",
    ),
    ("users cap (check)", "ALTER TABLE users DROP CONSTRAINT users_cap_with_open_bets"),
]


@dataclass
class Result:
    bets: int
    seconds: float
    pg_cpu_s: float

    @property
    def per_second(self) -> float:
        return self.bets / self.seconds

    @property
    def pg_us_per_bet(self) -> float:
        return self.pg_cpu_s / self.bets * 1e6


def postgres_cpu_s(postmaster_pid: int) -> float:
    """CPU seconds (user + system) of the postmaster and every process it started."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster_pid or ppid == postmaster_pid:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


async def postmaster_pid(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        data_dir = await connection.fetchval("SHOW data_directory")
    finally:
        await connection.close()
    return int((Path(data_dir) / "postmaster.pid").read_text().split()[0])


async def prepare(
    admin_url: str, name: str, players: int, markets: int, history: int, drop: str | None
) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = admin_url.replace("/postgres?", f"/{name}?", 1)
    await database.migrate(url)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(SEED_USERS, players)
        await connection.execute(SEED_MARKETS, markets)
        await connection.execute(SEED_BETS, history)
        await connection.execute(SEED_STAKES)
        if drop is not None:
            await connection.execute(drop)
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return url


async def drive(url: str, pid: int, args: argparse.Namespace) -> Result:
    pool = await database.create_pool(url, max_size=args.connections, min_size=args.connections)
    try:
        users = [row["id"] for row in await pool.fetch("SELECT id FROM users")]
        markets = [row["id"] for row in await pool.fetch("SELECT id FROM markets")]
        rng = random.Random(args.seed)
        placed = 0
        deadline = 0.0

        def batch() -> list[BetRequest]:
            return [
                BetRequest(
                    rng.choice(users),
                    rng.choice(markets),
                    uuid.uuid4().hex,
                    Side.THIS if rng.random() < 0.5 else Side.THAT,
                    Decimal(rng.choice(("10", "25", "50"))),
                    None,
                    Decimal(0),
                )
                for _ in range(args.batch)
            ]

        async def worker() -> None:
            nonlocal placed
            while time.monotonic() < deadline:
                answers = await bets.place_bets(pool, batch(), RULES)
                placed += sum(isinstance(answer, bets.PlacedBet) for answer in answers)

        deadline = time.monotonic() + 1.0  # warm-up: plans cached, pages in memory
        await asyncio.gather(*(worker() for _ in range(args.connections)))
        placed = 0
        cpu_before, started = postgres_cpu_s(pid), time.monotonic()
        deadline = started + args.seconds
        await asyncio.gather(*(worker() for _ in range(args.connections)))
        elapsed, cpu_after = time.monotonic() - started, postgres_cpu_s(pid)
        return Result(placed, elapsed, cpu_after - cpu_before)
    finally:
        await pool.close()


async def measure(admin_url: str, args: argparse.Namespace, drop: str | None) -> Result:
    url = await prepare(admin_url, "ledger_bench", args.players, args.markets, args.history, drop)
    return await drive(url, await postmaster_pid(url), args)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as folder:
        services = EmbeddedServices(Path(folder))
        admin_url, _ = services.start(args.database_url, "redis://unused")
        try:
            drops = [statement for name, statement in DROPPABLE if args.drop and args.drop in name]
            base = await measure(admin_url, args, "; ".join(drops) or None)
            print(
                f"batch {args.batch} x {args.connections} connections, {args.seconds:.0f} s: "
                f"{base.per_second:,.0f} bets/s, PostgreSQL CPU {base.pg_us_per_bet:.1f} µs per bet"
            )
            if not args.costs:
                return
            print(f"\n{'dropped':42} {'bets/s':>9} {'pg µs/bet':>10} {'saves µs/bet':>13}")
            for name, statement in DROPPABLE:
                run = await measure(admin_url, args, statement)
                saves = base.pg_us_per_bet - run.pg_us_per_bet
                print(f"{name:42} {run.per_second:9,.0f} {run.pg_us_per_bet:10.1f} {saves:13.1f}")
        finally:
            services.stop()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch", type=int, default=50, help="bets per place_bets call")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--players", type=int, default=2000)
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--history", type=int, default=20, help="bets per player stored before")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--costs", action="store_true", help="also measure each index/key/check")
    parser.add_argument("--drop", help="run without the indexes/keys/checks whose name has this")
    parser.add_argument("--database-url", help="a local PostgreSQL (default: an embedded one)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
