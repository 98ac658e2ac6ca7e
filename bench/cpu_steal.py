"""Where the machine's CPU time went while a bench ran: the share its hypervisor gave to
other guests ("steal") and the share left idle.

On a shared virtual machine, steal slows every process without showing in its own CPU
time. On 2026-12-03, this 2-core machine had 0 % steal when idle and 14-26 % during a
PostgreSQL run of bench/abuse.py, and the same code's latencies doubled from one run to
the next. A figure is comparable with another only when both ran with little steal, so
the benches print this line beside their figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuTimes:
    """Clock ticks of all CPUs since boot, from the first line of /proc/stat."""

    busy: int
    idle: int
    steal: int

    @property
    def total(self) -> int:
        return self.busy + self.idle + self.steal


def cpu_times(stat: str | None = None) -> CpuTimes:
    """`stat`: the text of /proc/stat (read when None). Guest time is already counted
    in user time, so the fields after steal are left out."""
    text = stat if stat is not None else Path("/proc/stat").read_text()
    fields = [int(value) for value in text.splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    return CpuTimes(busy=user + nice + system + irq + softirq, idle=idle + iowait,
                    steal=steal)


def shares(before: CpuTimes, after: CpuTimes) -> str:
    """The steal and idle shares of the CPU time between two readings, as a line."""
    total = after.total - before.total
    if total <= 0:
        return "CPU time: none elapsed"
    steal = 100 * (after.steal - before.steal) / total
    idle = 100 * (after.idle - before.idle) / total
    return f"steal {steal:.0f} %, idle {idle:.0f} % of the machine's CPU time"
