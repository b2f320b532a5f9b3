"""One chaos run: two `thisthat serve` nodes on PostgreSQL, Redis and the fake Polymarket, players
betting on both, faults on a seeded schedule, then the checks and `thisthat audit`.

Everything binds 127.0.0.1 and lives under one data folder; every process started here is stopped
here. The run is bounded: the schedule is finite, players stop at the end of the duration (or
when the last fault has recovered, whichever is later), and every wait has a limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Final

import aiohttp
import asyncpg

from chaos import checks
from chaos.faults import (
    NODE_KILL,
    NODE_TERM,
    POSTGRES_CRASH,
    REDIS_CRASH,
    RESOLVE,
    UPSTREAM,
    Fault,
    schedule,
)
from chaos.players import ChaosPlayer, Journal
from chaos.services import CrashablePostgres, CrashableRedis
from storage import database
from tests.fake_polymarket import FakePolymarket
from tests.nodes import ServerNode

STARTING_CREDITS: Final = Decimal("100000")
SETTLE_WAIT_S: Final = 60.0
SIGTERM_WAIT_S: Final = 30.0
AUDIT_CHECKS: Final = "thisthat audit violations"


@dataclass
class ChaosConfig:
    seed: int = 7
    duration_s: float = 60.0
    players_per_node: int = 6
    markets: int = 8
    data_dir: Path | None = None
    keep: bool = False


@dataclass
class ChaosReport:
    config: ChaosConfig
    data_dir: Path
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[str] = field(default_factory=list)
    bets: Counter[str] = field(default_factory=Counter)
    findings: checks.Findings = field(default_factory=checks.Findings)
    audit_output: str = ""
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def violations(self) -> int:
        return self.findings.total

    @property
    def passed(self) -> bool:
        return self.violations == 0 and self.faults.total() > 0


class ChaosRun:
    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        folder = config.data_dir or Path(tempfile.mkdtemp(prefix=f"thisthat-chaos-{config.seed}-"))
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.report = ChaosReport(config, folder)
        self.journal = Journal()
        self.postgres = CrashablePostgres(folder)
        self.redis = CrashableRedis(folder)
        self.fake = FakePolymarket()
        self.nodes: list[ServerNode] = []
        self.resolved: dict[str, str] = {}  # upstream condition id -> resolution
        self.added_at: dict[str, float] = {}
        self.redis_lost = False
        self.started = 0.0

    def log(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f}s] {text}"
        self.report.fault_log.append(line)
        print(line, flush=True)

    # --- the run --------------------------------------------------------------------------

    async def run(self) -> ChaosReport:
        self.started = time.monotonic()
        try:
            await asyncio.to_thread(self.postgres.start)
            await asyncio.to_thread(self.redis.start)
            await database.migrate(self.postgres.url)
            for market in self.fake.add_markets(self.config.markets):
                self.added_at[market.condition_id] = 0.0
            async with self.fake.serve():
                await self._with_fake_upstream()
        finally:
            for node in self.nodes:
                node.kill()
            await asyncio.to_thread(self.redis.stop)
            await asyncio.to_thread(self.postgres.stop)
            self.report.elapsed_s = time.monotonic() - self.started
        if self.report.passed and not self.config.keep and self.config.data_dir is None:
            shutil.rmtree(self.folder, ignore_errors=True)
        return self.report

    async def _with_fake_upstream(self) -> None:
        feed: dict[str, str] = {
            "feed": "polymarket",
            "polymarket_gamma_url": self.fake.gamma_url,
            "polymarket_base_url": self.fake.clob_url,
            "feed_markets_interval_s": "1",
            "feed_odds_interval_s": "0.5",
            "feed_resolution_interval_s": "0.5",
            "feed_lease_ttl_s": "1.5",
            "feed_timeout_s": "1",
            "starting_credits": str(STARTING_CREDITS),
            "jwt_access_expires_in": str(int(self.config.duration_s) + 3600),
            "rate_limit_signup_per_ip": "100000/60",
            "rate_limit_login_per_ip": "100000/60",
            "log_level": "WARNING",
        }
        self.nodes = [
            ServerNode(self.postgres.url, self.redis.url, self.folder, **feed) for _ in range(2)
        ]
        await asyncio.gather(*(node.start(ready_within_s=60) for node in self.nodes))
        self.log(f"nodes up: {', '.join(node.url for node in self.nodes)}")
        stop = asyncio.Event()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            players = [
                ChaosPlayer(
                    number,
                    [self.nodes[number % 2].url, self.nodes[1 - number % 2].url],
                    http,
                    self.journal,
                    random.Random(self.rng.random()),
                )
                for number in range(self.config.players_per_node * 2)
            ]
            playing = [asyncio.create_task(player.play(stop)) for player in players]
            drifting = asyncio.create_task(self._drift_odds(stop))
            await self._inject_faults()
            remaining = self.config.duration_s - (time.monotonic() - self.started)
            if remaining > 0:
                await asyncio.sleep(remaining)
            stop.set()
            self.log("players stop")
            _, late = await asyncio.wait([*playing, drifting], timeout=30)
            for task in late:
                task.cancel()
            await asyncio.gather(*playing, drifting, return_exceptions=True)
        await self._finish()

    async def _finish(self) -> None:
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                await node.start(ready_within_s=60)
        await self._wait_for_settlement()
        for node in self.nodes:
            await self._terminate(node, "at the end")
        self.report.bets = self.journal.counts()
        findings = await checks.run_checks(
            self.postgres.url, self.journal, self.resolved, STARTING_CREDITS
        )
        self.report.findings = findings
        await self._audit()
        self._scan_logs()

    # --- faults ---------------------------------------------------------------------------

    async def _inject_faults(self) -> None:
        plan = schedule(self.config.seed, self.config.duration_s)
        for fault in plan:
            wait = fault.at_s - (time.monotonic() - self.started)
            if wait > 0:
                await asyncio.sleep(wait)
            await self._inject(fault)
            self.report.faults[fault.label] += 1

    async def _inject(self, fault: Fault) -> None:
        self.log(
            f"fault: {fault.label}" + (f" on node {fault.node}" if "node" in fault.kind else "")
        )
        if fault.kind == NODE_KILL:
            node = self.nodes[fault.node]
            node.kill()
            await asyncio.sleep(fault.outage_s)
            await node.start(ready_within_s=60)
        elif fault.kind == NODE_TERM:
            node = self.nodes[fault.node]
            await self._terminate(node, "by the schedule")
            await asyncio.sleep(fault.outage_s)
            await node.start(ready_within_s=60)
        elif fault.kind == REDIS_CRASH:
            self.redis.crash()
            self.redis_lost = True
            await asyncio.sleep(fault.outage_s)
            await asyncio.to_thread(self.redis.restart)
        elif fault.kind == POSTGRES_CRASH:
            await asyncio.to_thread(self.postgres.crash)
            await asyncio.sleep(fault.outage_s)
            await asyncio.to_thread(self.postgres.restart)
        elif fault.kind == UPSTREAM:
            self._upstream_errors(fault.detail)
        elif fault.kind == RESOLVE:
            self._resolve(fault.detail)
        self.log(f"recovered: {fault.label}")

    async def _terminate(self, node: ServerNode, why: str) -> None:
        """SIGTERM and wait for the exit; note the exit code and how long it took."""
        process = node.process
        if process is None or process.poll() is not None:
            return
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(process.wait, SIGTERM_WAIT_S)
        except subprocess.TimeoutExpired:
            node.kill()
            self.report.notes.append(
                f"node :{node.port} did not exit within {SIGTERM_WAIT_S:g}s of SIGTERM ({why})"
            )
            return
        took = time.monotonic() - began
        self.log(f"node :{node.port} exited {code} {took:.1f}s after SIGTERM ({why})")
        if why == "by the schedule":
            self.report.notes.append(f"node :{node.port} took {took:.1f}s to exit after SIGTERM")
        if code != 0:
            self.report.notes.append(f"node :{node.port} exited {code} after SIGTERM ({why})")

    def _upstream_errors(self, kind: str) -> None:
        count = self.rng.randrange(5, 20)
        if kind in ("500", "503"):
            self.fake.fail_next(count, int(kind))
        elif kind == "429":
            self.fake.rate_limit_next(count, 1)
        elif kind == "hang":
            self.fake.hang_next(count, 1.5)
        else:
            self.fake.truncate_next(count)

    def _resolve(self, kind: str) -> None:
        now = time.monotonic() - self.started
        candidates = sorted(
            cid
            for cid, market in self.fake.markets.items()
            if not market.closed and now - self.added_at.get(cid, now) >= 3.0
        )
        if not candidates:
            return
        target = self.rng.choice(candidates)
        self.fake.resolve(target, kind)  # type: ignore[arg-type]
        self.resolved[target] = kind
        for market in self.fake.add_markets(1):
            self.added_at[market.condition_id] = now

    async def _drift_odds(self, stop: asyncio.Event) -> None:
        """Prices move upstream all the time, so bets race the feed's odds writes."""
        rng = random.Random(self.config.seed + 1)
        while not stop.is_set():
            open_markets = sorted(cid for cid, m in self.fake.markets.items() if not m.closed)
            for cid in rng.sample(open_markets, min(2, len(open_markets))):
                price = self.fake.markets[cid].this_price + Decimal(rng.randrange(-3, 4)) / 100
                self.fake.set_price(cid, min(max(price, Decimal("0.05")), Decimal("0.95")))
            await asyncio.sleep(0.5)

    # --- the end --------------------------------------------------------------------------

    async def _wait_for_settlement(self) -> None:
        connection = await asyncpg.connect(self.postgres.url)
        try:
            deadline = time.monotonic() + SETTLE_WAIT_S
            while time.monotonic() < deadline:
                if await checks.unsettled_resolutions(connection, self.resolved) == 0:
                    break
                await asyncio.sleep(0.5)
        finally:
            await connection.close()
        self.log("resolutions settled (or the wait ran out)")

    def _command(self, *args: str) -> subprocess.CompletedProcess[str]:
        environment = {
            **os.environ,
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "DATA_DIR": str(self.folder),
            "FEED": "off",
            "LOG_LEVEL": "WARNING",
        }
        return subprocess.run(  # noqa: S603 - our own CLI with fixed arguments
            [sys.executable, "-m", "server.cli", *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    async def _audit(self) -> None:
        """`thisthat audit`; after a Redis crash the boards are first rebuilt from the ledger, as
        an operator would, and what the audit found before that is noted."""
        first = await asyncio.to_thread(self._command, "audit")
        if first.returncode != 0 and self.redis_lost:
            lines = [line for line in first.stdout.splitlines() if line.startswith("invariant")]
            board_only = all("leaderboard" in line for line in lines)
            self.report.notes.append(
                f"audit before `thisthat leaderboard rebuild` found {len(lines)} violation(s)"
                + (" (leaderboards only)" if board_only else "")
            )
            self.report.notes.extend(f"  {line}" for line in lines[:5])
            rebuilt = await asyncio.to_thread(self._command, "leaderboard", "rebuild")
            self.log(rebuilt.stdout.strip().splitlines()[-1] if rebuilt.stdout else "rebuild")
            result = await asyncio.to_thread(self._command, "audit")
        else:
            result = first
        self.report.audit_output = (result.stdout + result.stderr).strip()
        violations = [line for line in result.stdout.splitlines() if line.startswith("invariant")]
        for line in violations:
            self.report.findings.add(AUDIT_CHECKS, line)
        if result.returncode != 0 and not violations:
            self.report.findings.add(AUDIT_CHECKS, f"audit exited {result.returncode}")

    def _scan_logs(self) -> None:
        """Error lines of the node logs, by message: each is worth a look, none is a verdict."""
        errors: Counter[str] = Counter()
        for path in sorted(self.folder.glob("node-*.log")):
            with contextlib.suppress(OSError):
                for line in path.read_text(errors="replace").splitlines():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict) and record.get("level") in ("error", "critical"):
                        errors[str(record.get("msg"))[:100]] += 1
        for message, count in errors.most_common(10):
            self.report.notes.append(f"node log error x{count}: {message}")
