"""CPU time by process group (server, PostgreSQL, Redis, load client) over a measured window.

On a shared, noisy machine rates swing from run to run; CPU seconds spent per operation by each
process are steadier, and say where the cost of an operation goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loadtest.system import cpu_seconds


def children(pid: int) -> list[int]:
    """Direct children of `pid` (PostgreSQL's backends are children of the postmaster)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def postgres_pids(pgdata: Path) -> list[int]:
    """The postmaster (first line of postmaster.pid) and every backend under it."""
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [postmaster, *children(postmaster)]


def _sample(pids: list[int]) -> dict[int, float]:
    sample = {}
    for pid in pids:
        try:
            sample[pid] = cpu_seconds(pid)
        except (OSError, IndexError, ValueError):
            continue
    return sample


@dataclass
class CpuWindow:
    """Processes by group; `start()` and `stop()` bracket the window, `seconds()` sums by group.

    Groups are given as callables' results at each sample, so backends that PostgreSQL forks
    during the window are counted from zero.
    """

    groups: dict[str, list[int]]
    pgdata: Path | None = None
    _start: dict[str, dict[int, float]] = field(default_factory=dict)
    _stop: dict[str, dict[int, float]] = field(default_factory=dict)

    def _pids(self, group: str) -> list[int]:
        if group == "postgres" and self.pgdata is not None:
            return postgres_pids(self.pgdata)
        return self.groups.get(group, [])

    def _names(self) -> list[str]:
        names = list(self.groups)
        if self.pgdata is not None and "postgres" not in names:
            names.append("postgres")
        return names

    def start(self) -> None:
        self._start = {name: _sample(self._pids(name)) for name in self._names()}

    def stop(self) -> None:
        self._stop = {name: _sample(self._pids(name)) for name in self._names()}

    def seconds(self) -> dict[str, float]:
        totals = {}
        for name, after in self._stop.items():
            before = self._start.get(name, {})
            totals[name] = round(sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items()), 3)
        return totals
