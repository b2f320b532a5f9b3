"""`make chaos` in small: a short seeded run with every fault kind ends with zero violations."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.cli import summary
from chaos.faults import INFRASTRUCTURE, RESOLUTIONS, RESOLVE, UPSTREAM, schedule
from chaos.run import ChaosConfig, ChaosRun

SEED = 7
DURATION_S = 35.0


def test_the_schedule_has_every_fault_kind_and_depends_only_on_the_seed() -> None:
    plan = schedule(SEED, DURATION_S)
    kinds = {fault.kind for fault in plan}
    assert kinds == {*INFRASTRUCTURE, UPSTREAM, RESOLVE}
    assert {fault.detail for fault in plan if fault.kind == RESOLVE} == set(RESOLUTIONS)
    assert plan == schedule(SEED, DURATION_S)
    assert plan != schedule(SEED + 1, DURATION_S)
    longer = schedule(SEED, 300)
    assert len(longer) > len(plan) and max(f.at_s for f in longer) <= 300


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_short_chaos_run_loses_no_bet_and_creates_no_credit(tmp_path: Path) -> None:
    report = await ChaosRun(
        ChaosConfig(seed=SEED, duration_s=DURATION_S, players_per_node=4, data_dir=tmp_path)
    ).run()
    table = summary(report)
    injected = {label.split(" (")[0] for label in report.faults}
    assert injected >= {*INFRASTRUCTURE, UPSTREAM}, table
    assert {f"{RESOLVE} ({kind})" for kind in RESOLUTIONS} <= set(report.faults), table
    assert report.bets["acked ok"] > 100, table
    assert any(kind.startswith("refused ") for kind in report.bets), table
    assert report.findings.total == 0, table
    assert report.passed, table
