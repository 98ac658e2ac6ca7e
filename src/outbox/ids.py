"""Identifiers: time-ordered message ids, Message-ID header values and request ids.

Their random part comes from the operating system's generator, as `secrets` takes it,
but read 4 KB at a time rather than with a system call for each: three ids a submit
took three calls of `os.urandom`, 4 % of serve's event loop on `POST /v1/messages`
(py-spy over `bench/cpu_split.py --path http-lean`, issue 15). A process made by
`fork` starts with an empty pool, so parent and child never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading
import time

POOL_BYTES = 4096


class _RandomPool:
    """Bytes of `os.urandom`, read a pool at a time and each handed out once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # ids are made on the event loop and on threads
        self._pool = b""
        self._used = 0

    def hex(self, nbytes: int) -> str:
        with self._lock:
            if self._used + nbytes > len(self._pool):
                self._pool, self._used = os.urandom(max(POOL_BYTES, nbytes)), 0
            start, self._used = self._used, self._used + nbytes
            return self._pool[start:self._used].hex()

    def forget(self) -> None:
        """After `fork`, in the child: what the parent read is the parent's alone."""
        self._lock = threading.Lock()
        self._pool, self._used = b"", 0


_POOL = _RandomPool()
os.register_at_fork(after_in_child=_POOL.forget)


def random_hex(nbytes: int) -> str:
    """`2 * nbytes` hex digits of the operating system's randomness, as
    `secrets.token_hex(nbytes)` gives them."""
    return _POOL.hex(nbytes)


def new_message_key() -> str:
    """32 hex digits, sortable by creation time (48-bit ms clock + 80 random bits)."""
    return f"{int(time.time() * 1000):012x}{random_hex(10)}"


def new_message_id(domain: str) -> str:
    """A globally unique Message-ID header value, angle brackets included: 32 hex
    digits that, like the message key's, begin with the clock (as Postfix's do), so
    that the index of Message-IDs grows at its end. Random values wrote one page of
    that index for each message: 6 of the 46 pages a commit wrote on http-lean
    (the WAL's frames over `bench/cpu_split.py --path http-lean`), and at a million
    messages a page that is seldom in the cache."""
    return f"<{int(time.time() * 1000):012x}{random_hex(10)}@{domain or 'outbox.invalid'}>"
