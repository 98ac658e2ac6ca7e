"""Connections' transports, judged by what they do rather than by their class.

uvloop's transports do not derive from asyncio's transport classes, so an
`isinstance(transport, asyncio.WriteTransport)` check is false for every one of
them on that loop: a pipelined send failed as "Connection lost" for that reason.
"""

from __future__ import annotations

import asyncio
from typing import cast


def writable(transport: asyncio.BaseTransport | None) -> asyncio.WriteTransport | None:
    """`transport` as one that can be written to and aborted, or None (no transport,
    or one that cannot)."""
    if transport is None or not all(callable(getattr(transport, name, None))
                                    for name in ("write", "abort", "is_closing")):
        return None
    return cast(asyncio.WriteTransport, transport)
