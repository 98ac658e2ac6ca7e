"""The event loop of the long-running processes: uvloop's where it is installed
(a dependency on Linux), else asyncio's.

uvloop runs the same coroutines on libuv. Measured side by side with
`bench/compare.py --reps 1 --paths http-lean,drain`, twice each, on two cores: CPU
per 1,000 messages 1.48-1.50 s against 1.63-1.67 over HTTP and 0.61-0.64 against
0.71-0.73 in a drain on SQLite. Its transports are not asyncio's classes, which
`outbox.transports` allows for. The CLI's short commands keep asyncio's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def loop_name() -> str:
    """The running loop's maker: "uvloop" or "asyncio"."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
