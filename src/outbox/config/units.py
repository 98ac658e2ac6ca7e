"""Human units in configuration: durations ("60s", "1h", "3d") and sizes
("25MB" decimal, "20MiB" binary)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_duration(value: object) -> timedelta:
    """'90s', '5m', '1h', '3d', '250ms', or a number of seconds."""
    if isinstance(value, timedelta) and value >= timedelta(0):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"'{value}' is not a duration; write it like 30s, 5m, 1h or 3d")
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _DURATION_UNITS[(unit or "s").lower()])


MOST_PROCESSES = 64


def parse_process_count(value: object) -> int | str:
    """A number of processes, 0 to MOST_PROCESSES, or "auto" (chosen from the cores)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) > MOST_PROCESSES:
        raise ValueError(f"'{value}' is not a number of processes; write a whole number "
                         f"from 0 to {MOST_PROCESSES}, or \"auto\"")
    return int(text)


def parse_size(value: object) -> int:
    """'25MB' (decimal), '20MiB' (binary), or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"'{value}' is not a size; write it like 500KB, 25MB or 1MiB")
    number, unit = match.groups()
    # Decimal, not float: "4.1GB" is 4,100,000,000 bytes, not 4,099,999,999.
    return int(Decimal(number) * _SIZE_UNITS[(unit or "b").lower()])


def format_duration(delta: timedelta) -> str:
    """The shortest text `parse_duration` reads back as `delta` (to the millisecond)."""
    milliseconds = round(delta.total_seconds() * 1000)
    if milliseconds % 1000:
        return f"{milliseconds}ms"
    seconds = milliseconds // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
