"""Host names a session needs: the EHLO name, and whether a relay is loopback.

`local_hostname` is the configured `helo_name`, else this host's FQDN. The
FQDN is looked up at most once per process, in a thread of its own, and a
session waits for it at most `LOOKUP_TIMEOUT`: with a resolver that does not
answer, EHLO carries the bare host name until the lookup comes back.
`is_loopback` decides by the name alone (no lookup) whether AUTH may go to
the relay without TLS.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from outbox.config.sections import is_loopback_host as is_loopback

__all__ = ["is_loopback", "local_hostname"]

LOOKUP_TIMEOUT = 5.0  # seconds a session waits for the FQDN before using the host name
_POLL = 0.05


class _FqdnLookup:
    """This host's FQDN, looked up once in a daemon thread.

    A blocked resolver call cannot be cancelled, and it may outlive the event
    loop that asked; so the thread hands its answer over through a
    `threading.Event` that waiting sessions poll, never through a loop's
    future, and it never holds a thread of the loop's shared executor.
    """

    def __init__(self) -> None:
        self._done = threading.Event()
        self._starting = threading.Lock()
        self._started = False
        self._name = ""

    async def wait(self, timeout: float) -> str | None:
        """The FQDN, or None if it is not known within `timeout` seconds."""
        self._start_once()
        deadline = time.monotonic() + timeout
        while not self._done.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(_POLL)
        return self._name if self._done.is_set() else None

    def _start_once(self) -> None:
        with self._starting:
            if not self._started:
                self._started = True
                threading.Thread(target=self._look_up, name="outbox-fqdn", daemon=True).start()

    def _look_up(self) -> None:
        try:
            self._name = socket.getfqdn() or "localhost"
        finally:
            self._done.set()


_FQDN = _FqdnLookup()


async def local_hostname(helo_name: str) -> str:
    """The EHLO name: the configured one, else this host's FQDN (see the module
    docstring), else, while the FQDN is not known, the bare host name."""
    if helo_name:
        return helo_name
    return await _FQDN.wait(LOOKUP_TIMEOUT) or socket.gethostname() or "localhost"
