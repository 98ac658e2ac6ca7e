"""Turns of the event loop inside a PostgreSQL transaction (issue 17).

On PostgreSQL a transaction's Python (building a statement's parameters, reading its
rows) runs on the event loop, through SQLAlchemy's greenlet, between the awaits of
its statements: a big message's 1,000 recipients or events would hold every other
request for one long step. `in_turns` hands the loop a turn every CHUNK items.
SQLite's transactions run on the writer thread, which the interpreter's switch
interval already interleaves with the loop: there, `in_turns` changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import TypeVar

from sqlalchemy import util
from sqlalchemy.util.concurrency import in_greenlet

T = TypeVar("T")
# SQLAlchemy 2.1 named it `await_`; `await_only`, the 2.0 name, is deprecated from 2.2.
_await = getattr(util, "await_", None) or util.await_only
CHUNK = 250  # items between two turns: about 1 ms of work on the loop


def in_turns(items: Iterable[T]) -> Iterator[T]:
    """`items`; inside an async transaction, the loop runs others every CHUNK of them."""
    if not in_greenlet():
        yield from items
        return
    for n, item in enumerate(items, 1):
        yield item
        if n % CHUNK == 0:
            _await(asyncio.sleep(0))
