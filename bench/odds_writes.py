"""The odds history's cost on PostgreSQL: storage/markets.py `record_odds` (the feed's own statement)
driven at a set rate of odds changes, and the 30-day chart read over a month of candles.

Two ways to write the same upstream rate, each for `seconds`:
  paced        as the feed writes it under ODDS_PUSH_PACING=beat: a market at most once per
               ODDS_PUSH_MIN_INTERVAL_MS (250 ms), busy markets together on the shared beat; one
               statement a beat with every market (200 markets moving 10 times a second: 4
               statements of 200 a second; under `first-change` the same rows go in more, smaller
               statements, at most one per 20 ms);
  every change each change written: statements of 50 markets, as many a second as make the rate.
Rows written are PostgreSQL's own counts (pg_stat_user_tables), bytes its relation sizes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import asyncpg

from bench.processes import CpuWindow
from game.odds_history import Interval
from loadtest.stats import new_histogram, record_seconds, summarize
from services import odds_history as odds_charts
from storage import database
from storage import markets as market_store
from storage.odds_history import CANDLE_ORIGIN

TABLES: Final = ("odds_minutes", "odds_hours", "markets")
# ODDS_PUSH_MIN_INTERVAL_MS's default: the beat the live feed writes busy markets on.
FEED_BEAT_S: Final = 0.25
EVERY_CHANGE_BATCH: Final = 50
CHART_DAYS: Final = 30
CHART_READS: Final = 30

INSERT_MARKETS: Final = """
INSERT INTO markets (source_id, question, this_label, that_label, this_token_id, that_token_id,
                     this_odds, that_odds, odds_updated_at, ends_at)
SELECT s, 'Odds history benchmark market', 'Yes', 'No', s || '-1', s || '-2', 0.5, 0.5, now(),
       now() + interval '30 days'
FROM unnest($1::text[]) AS s
RETURNING id
"""
TABLE_STATS: Final = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, pg_total_relation_size(relid) AS bytes
FROM pg_stat_user_tables WHERE relname = ANY($1::text[])
"""
# A month of candles for one market, ending at $2: a minute candle for every minute (the busiest
# market keeps them 30 days) and an hour candle for every hour.
FILL_CANDLES: Final = f"""
INSERT INTO {{table}} (market_id, bucket_start, open, high, low, close)
SELECT $1, date_bin('{{step}}', $2::timestamptz, {CANDLE_ORIGIN}) - g * interval '{{step}}',
       0.4 + (g % 200) / 1000.0, 0.45 + (g % 200) / 1000.0, 0.35 + (g % 200) / 1000.0,
       0.41 + (g % 200) / 1000.0
FROM generate_series(1, $3::int) AS g
"""  # noqa: S608 - constant table names and steps, no input


@dataclasses.dataclass(frozen=True)
class WriteMode:
    name: str
    batch: int  # markets a statement
    statements_per_s: float


def modes(changes_per_s: float, markets: int) -> list[WriteMode]:
    """The two ways of writing `changes_per_s` over `markets` (see the module docstring)."""
    beats_per_s = 1 / FEED_BEAT_S
    # On the beat a market is written once whatever it moved since: at most one a beat each.
    paced_markets = min(markets, round(changes_per_s / beats_per_s))
    batch = min(EVERY_CHANGE_BATCH, markets)
    return [
        WriteMode("paced", paced_markets, beats_per_s),
        WriteMode("everyChange", batch, changes_per_s / batch),
    ]


def odds_at(step: int, position: int) -> tuple[Decimal, Decimal]:
    """A market's odds at its `step`-th change: never the same twice running."""
    this_odds = Decimal(300 + (step * 7 + position) % 400) / 1000
    return this_odds, 1 - this_odds


async def table_stats(database_url: str) -> dict[str, dict[str, int]]:
    """Counts as PostgreSQL holds them once every writer has gone (a backend reports at exit)."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        rows = await connection.fetch(TABLE_STATS, list(TABLES))
    finally:
        await connection.close()
    return {
        row["relname"]: {
            "inserted": row["n_tup_ins"],
            "updated": row["n_tup_upd"],
            "hotUpdated": row["n_tup_hot_upd"],
            "bytes": row["bytes"],
        }
        for row in rows
    }


def stats_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    return {
        table: {key: after[table][key] - before.get(table, {}).get(key, 0) for key in after[table]}
        for table in after
    }


async def drive(
    database_url: str,
    pgdata: Path | None,
    market_ids: list[uuid.UUID],
    mode: WriteMode,
    seconds: float,
    steps: list[int],
) -> dict[str, Any]:
    """`mode.statements_per_s` calls of record_odds for `seconds`, each on the next `mode.batch`
    markets in turn; a statement due while the last one runs starts when it ends."""
    pool = await database.create_pool(database_url, max_size=1, min_size=1)
    latency = new_histogram()
    changed = 0
    statements = 0
    try:
        before = await table_stats(database_url)
        window = CpuWindow({}, pgdata=pgdata)
        loop = asyncio.get_running_loop()
        window.start()
        client_before = time.process_time()
        started = loop.time()
        cursor = 0
        while (due := started + statements / mode.statements_per_s) < started + seconds:
            await asyncio.sleep(max(0.0, due - loop.time()))
            readings = []
            for _ in range(mode.batch):
                position = cursor % len(market_ids)
                steps[position] += 1
                readings.append((market_ids[position], *odds_at(steps[position], position)))
                cursor += 1
            sent = time.perf_counter()
            written = await market_store.record_odds(pool, readings, datetime.now(UTC))
            record_seconds(latency, time.perf_counter() - sent)
            changed += len(written)
            statements += 1
        wall = loop.time() - started
        window.stop()
        client_cpu = time.process_time() - client_before
    finally:
        await pool.close()
    await asyncio.sleep(0.5)
    rows = stats_delta(before, await table_stats(database_url))
    pg_cpu = window.seconds().get("postgres", 0.0)
    return {
        "mode": dataclasses.asdict(mode),
        "seconds": round(wall, 2),
        "statements": statements,
        "statementsPerS": round(statements / wall, 1),
        "changes": changed,
        "changesPerS": round(changed / wall, 1),
        "statementLatency": summarize(latency),
        "rowsPerS": {
            table: {
                "inserted": round(entry["inserted"] / wall, 1),
                "updated": round(entry["updated"] / wall, 1),
                "hotUpdated": round(entry["hotUpdated"] / wall, 1),
            }
            for table, entry in rows.items()
        },
        "bytesGrown": {table: entry["bytes"] for table, entry in rows.items()},
        "pgCpuS": round(pg_cpu, 3),
        "pgCpuShare": round(pg_cpu / wall, 3),
        "pgCpuUsPerChange": round(pg_cpu / changed * 1e6, 1) if changed else None,
        "clientCpuUsPerChange": round(client_cpu / changed * 1e6, 1) if changed else None,
    }


async def fill_month(
    database_url: str, market_id: uuid.UUID, now: datetime
) -> dict[str, dict[str, float]]:
    """A month of minute and hour candles for one market; the bytes each row takes on disk,
    indexes included (after VACUUM ANALYZE, so no dead rows count)."""
    connection = await asyncpg.connect(database_url)
    try:
        sized = {}
        for table, step, rows in (
            ("odds_minutes", "1 minute", CHART_DAYS * 1440),
            ("odds_hours", "1 hour", CHART_DAYS * 24),
        ):
            await connection.execute(f"VACUUM ANALYZE {table}")
            before = await connection.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            await connection.execute(
                FILL_CANDLES.format(table=table, step=step), market_id, now, rows
            )
            await connection.execute(f"VACUUM ANALYZE {table}")
            after = await connection.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            sized[table] = {"rows": rows, "bytesPerRow": round((after - before) / rows, 1)}
    finally:
        await connection.close()
    return sized


async def time_charts(database_url: str, market_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """services/odds_history.py `chart` (what `market:history` answers with) over the month: as
    the span chooses (hours), by the minute (the latest 1,440), and a day by the minute."""
    pool = await database.create_pool(database_url, max_size=1, min_size=1)
    try:
        market = await market_store.get_market(pool, market_id)
        assert market is not None
        month = now - timedelta(days=CHART_DAYS)
        results = {}
        for name, interval, start in (
            ("month", None, month),
            ("monthByMinute", Interval.MINUTE, month),
            ("dayByMinute", Interval.MINUTE, now - timedelta(days=1)),
            ("monthByDay", Interval.DAY, month),
        ):
            latency = new_histogram()
            points = 0
            chosen = ""
            for _ in range(CHART_READS):
                sent = time.perf_counter()
                chart = await odds_charts.chart(pool, market, interval, start, now, now)
                record_seconds(latency, time.perf_counter() - sent)
                points, chosen = len(chart.candles), chart.interval.value
            results[name] = {"interval": chosen, "points": points, "latency": summarize(latency)}
        return results
    finally:
        await pool.close()


async def history_run(
    database_url: str,
    pgdata: Path | None,
    *,
    changes_per_s: float,
    markets: int,
    seconds: float,
    say: Any = print,
) -> dict[str, Any]:
    """The whole phase on a migrated database that nothing else writes to meanwhile."""
    tag = uuid.uuid4().hex[:8]
    connection = await asyncpg.connect(database_url)
    try:
        ids = [
            row["id"]
            for row in await connection.fetch(
                INSERT_MARKETS, [f"bench-history-{tag}-{n}" for n in range(markets + 1)]
            )
        ]
    finally:
        await connection.close()
    chart_market, market_ids = ids[0], ids[1:]
    steps = [0] * len(market_ids)
    runs = {}
    for mode in modes(changes_per_s, markets):
        say(
            f"odds history: {mode.name}, {mode.statements_per_s:g} statements/s of {mode.batch}"
            f" markets for {seconds:g}s"
        )
        runs[mode.name] = await drive(database_url, pgdata, market_ids, mode, seconds, steps)
    now = datetime.now(UTC)
    say(f"odds history: {CHART_DAYS} days of candles for one market, then its charts")
    sized = await fill_month(database_url, chart_market, now)
    charts = await time_charts(database_url, chart_market, now)
    for run in runs.values():
        run["bytesPerMarketPerDay"] = {
            # A candle a minute (an hour) holds every change within it: rows a day do not grow
            # with the rate.
            "odds_minutes": round(sized["odds_minutes"]["bytesPerRow"] * 1440),
            "odds_hours": round(sized["odds_hours"]["bytesPerRow"] * 24),
        }
    return {
        "changesPerS": changes_per_s,
        "markets": markets,
        "runs": runs,
        "candleRows": sized,
        "charts": charts,
    }
