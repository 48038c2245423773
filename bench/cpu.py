"""CPU time by component, read from /proc: what each process tree (web, worker, the
reference), PostgreSQL, Redis and the load generator itself spent during a measured window.

Seconds of CPU per completed operation travel between machines better than operations per
second, and split by component they say where the next profile should look.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")


def _parse_stat(raw: str) -> tuple[str, int, float]:
    """(command name, parent pid, user + system CPU seconds) from a process's or a thread's
    ``stat`` file."""
    # The name is in parentheses and may contain spaces; the fields after it are fixed.
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return name, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, parent pid, user + system CPU seconds) of one process."""
    try:
        return _parse_stat((PROC / str(pid) / "stat").read_text())
    except OSError:
        return None


def _thread_seconds(pid: int, *, main: bool) -> float:
    """CPU seconds of a process's main thread (its id is the pid) or of all its others."""
    total = 0.0
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        if (int(task.name) == pid) != main:
            continue
        try:
            total += _parse_stat((task / "stat").read_text())[2]
        except OSError:
            continue  # the thread ended meanwhile
    return total


def _table() -> dict[int, tuple[str, int, float]]:
    table = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (row := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = row
    return table


def _tree(table: Mapping[int, tuple[str, int, float]], roots: Iterable[int]) -> set[int]:
    members = set(roots) & set(table)
    grew = True
    while grew:
        grew = False
        for pid, (_, parent, _) in table.items():
            if parent in members and pid not in members:
                members.add(pid)
                grew = True
    return members


@dataclass(frozen=True)
class Component:
    """What to count: the process trees under ``roots``, or every process with one of
    ``names`` (a server the bench did not start: PostgreSQL, Redis). ``threads`` splits a
    tree's processes: "main" counts each one's main thread only (an asyncio server's event
    loop), "others" every other thread (its thread pool: password hashing)."""

    label: str
    roots: tuple[int, ...] = ()
    names: tuple[str, ...] = ()
    threads: str = "all"  # "all", "main" or "others"


class CpuMeter:
    """Snapshot CPU seconds per component at start and stop; the difference is the window's.

    Processes are matched at each snapshot, so a child that exits inside the window loses the
    time it used (none do here: the measured servers run for the whole window)."""

    def __init__(self, components: list[Component]) -> None:
        self.components = components
        self._start: dict[str, dict[int, float]] = {}

    def _read(self) -> dict[str, dict[int, float]]:
        table = _table()
        reading: dict[str, dict[int, float]] = {}
        for component in self.components:
            if component.names:
                pids = {pid for pid, row in table.items() if row[0] in component.names}
            else:
                pids = _tree(table, component.roots)
            if component.threads == "all":
                reading[component.label] = {pid: table[pid][2] for pid in pids}
            else:
                main = component.threads == "main"
                reading[component.label] = {pid: _thread_seconds(pid, main=main) for pid in pids}
        return reading

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        """CPU seconds each component used since ``start``."""
        end = self._read()
        used = {}
        for label, pids in end.items():
            before = self._start.get(label, {})
            used[label] = sum(seconds - before.get(pid, 0.0) for pid, seconds in pids.items())
        return used


def own_cpu() -> float:
    """CPU seconds this process (the load generator) has used."""
    times = os.times()
    return times.user + times.system
