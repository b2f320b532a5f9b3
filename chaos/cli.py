"""The command line of the chaos run and its summary table; the exit code is 0 only when every
violation count is zero."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from chaos import checks
from chaos.run import AUDIT_CHECKS, ChaosConfig, ChaosReport, ChaosRun


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Crash, restart and disturb a two-node ThisThat under betting load, then "
        "check that no acked bet was lost, no refused bet was stored and no credit was "
        "created or destroyed. Loopback only; every process it starts, it stops.",
    )
    parser.add_argument("--seed", type=int, default=7, help="fault schedule and player seed (7)")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of betting under faults (60)"
    )
    parser.add_argument("--players", type=int, default=6, help="players per node (6)")
    parser.add_argument("--markets", type=int, default=8, help="open upstream markets (8)")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="keep everything here (default: a temp folder)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (logs, data) even on a pass"
    )
    return parser


def summary(report: ChaosReport) -> str:
    config = report.config
    lines = [
        "",
        f"chaos summary: seed {config.seed}, {config.duration_s:g}s of betting, "
        f"{config.players_per_node * 2} players on 2 nodes, {report.elapsed_s:.0f}s in all",
        "",
        "faults injected",
    ]
    for kind, count in sorted(report.faults.items()):
        lines.append(f"  {kind:<56} {count:>6}")
    lines.append(f"  {'total':<56} {report.faults.total():>6}")
    lines += ["", "bets"]
    for kind, count in sorted(report.bets.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"  {kind:<56} {count:>6}")
    for fact, value in report.findings.facts.items():
        lines.append(f"  {fact:<56} {value:>6}" if value.isdigit() else f"  {fact}: {value}")
    lines += ["", "violations"]
    for check in (*checks.CHECKS, AUDIT_CHECKS):
        lines.append(f"  {check:<56} {report.findings.counts[check]:>6}")
        for example in report.findings.examples.get(check, []):
            lines.append(f"      {example}")
    lines.append(f"  {'total':<56} {report.violations:>6}")
    if report.notes:
        lines += ["", "notes (not counted as violations)"]
        lines += [f"  {note}" for note in report.notes]
    lines += [
        "",
        f"audit: {report.audit_output.splitlines()[-1] if report.audit_output else 'not run'}",
        f"data and logs: {report.data_dir}",
        "PASS" if report.passed else "FAIL",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The fake upstream's server would log every request a killed node drops: that is the point.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    config = ChaosConfig(
        seed=args.seed,
        duration_s=args.duration,
        players_per_node=args.players,
        markets=args.markets,
        data_dir=args.data_dir,
        keep=args.keep,
    )
    report = asyncio.run(ChaosRun(config).run())
    print(summary(report), flush=True)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
