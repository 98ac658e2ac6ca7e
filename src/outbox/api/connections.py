"""HTTP connections under limits: uvicorn's httptools protocol with a guard.

uvicorn (0.54) times out only idle keep-alive connections, and its
`limit_concurrency` answers a plain 503 after it has read a request. Here:

- at most `[server] max_connections` admitted at once and
  `max_connections_per_client` from one address (kept under the process's
  open-file limit, with room for the database and files; one address then gets
  half at most); a connection over either gets a JSON 503 with Retry-After once
  its first bytes arrive (so the answer is not lost to a reset), and is closed;
- at the open-file limit no connection is accepted at all: they wait in the
  kernel's queue (`accept_connections`);
- a request's headers must arrive within `header_timeout` of its first byte
  (of the connection, for the first request): else 408 and closed;
- a body that sends nothing for `body_timeout` is dropped (unless Outbox is the
  one not reading);
- a request line and headers over `max_request_headers_size` get 431 and the
  connection is closed (httptools has no limit of its own);
- idle keep-alive connections close after `keepalive_timeout` (uvicorn's);
- a request that is not HTTP/1.1 gets a JSON 400 and the connection is closed.

Log lines about refused, timed-out or unparsable connections are throttled: a
few a minute, each with the counts since the one before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from outbox.config import ServerSettings
from outbox.observability import Throttle

log = structlog.get_logger("outbox.api")
UNPARSED = "Invalid HTTP request received."  # uvicorn's log line for each, unthrottled

RESERVED_FILES = 64  # descriptors kept for the database, blobs, logs, relays, SMTP
RETRY_AFTER = 1
REFUSED_GRACE = 1.0  # seconds a refused connection may take to send its first bytes


def descriptor_ceiling() -> int | None:
    """Connections of every kind this process can hold: the soft open-file limit less
    what the rest of Outbox needs; None without a limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(8, soft - RESERVED_FILES)


class ConnectionGuard:
    """Counts and limits a server's connections; throttled reports of trouble.

    `live` counts every accepted connection, refused ones too (until they are closed):
    at `ceiling` Outbox stops accepting, and new connections wait in the kernel's
    queue instead of costing a descriptor. `open` counts the admitted ones."""

    def __init__(self, settings: ServerSettings, ceiling: int | None = None) -> None:
        self.ceiling = ceiling or descriptor_ceiling() or settings.max_connections * 2
        self.max_connections = max(1, min(settings.max_connections, self.ceiling * 3 // 4))
        self.per_client = settings.max_connections_per_client
        if self.max_connections < settings.max_connections:  # one address: half at most
            self.per_client = max(1, min(self.per_client, self.max_connections // 2))
        self.header_timeout = settings.header_timeout.total_seconds()
        self.body_timeout = settings.body_timeout.total_seconds()
        self.max_header_bytes = settings.max_request_headers_size
        self.open = 0
        self.live = 0
        self.by_client: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()  # since the last log line
        self._throttle = Throttle(burst=1, period=60.0)
        self._room = asyncio.Event()
        self._room.set()
        if self.max_connections < settings.max_connections:
            log.warning("server.max_connections lowered to fit the open-file limit",
                        configured=settings.max_connections, used=self.max_connections,
                        per_client=self.per_client,
                        hint="raise the limit (ulimit -n, LimitNOFILE=) to allow more")

    def connected(self) -> None:
        self.live += 1
        if self.live >= self.ceiling:
            self._room.clear()

    def disconnected(self) -> None:
        self.live -= 1
        if self.live < self.ceiling:
            self._room.set()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    def admit(self, client: str) -> str | None:
        """None, and the connection counted; else why it is refused."""
        if self.open >= self.max_connections:
            return f"{self.max_connections} connections are open (server.max_connections)"
        if self.by_client[client] >= self.per_client:
            return (f"{self.per_client} connections are open from {client} "
                    "(server.max_connections_per_client)")
        self.open += 1
        self.by_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self.open -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]

    def report(self, kind: str, detail: str) -> None:
        """Count one refused or timed-out connection; log now and then."""
        self.counts[kind] += 1
        if self._throttle.admit(time.monotonic()) is not None:
            log.warning("connections refused or timed out", last=detail, open=self.open,
                        **dict(self.counts))
            self.counts.clear()


def _response(status: int, reason: str, code: str, message: str,
              extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
               ("Connection", "close"), *extra]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"HTTP/1.1 {status} {reason}\r\n{head}\r\n".encode() + body


def protocol_for(guard: ConnectionGuard) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn builds each connection with, bound to `guard`."""
    logging.getLogger("uvicorn.error").addFilter(_reported_by_the_guard)  # once: same object
    return type("GuardedProtocol", (GuardedProtocol,), {"guard": guard})


def _reported_by_the_guard(record: logging.LogRecord) -> bool:
    return record.getMessage() != UNPARSED  # GuardedProtocol.send_400_response reports it


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol under the guard: with its C parser, serve alone took
    13 % more small submits a second than with h11's (1,306 -> 1,472 msg/s, `bench/
    accept.py --client lean --pause-delivery --setups plain`)."""

    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address = ""
        self._live = False  # counted in guard.live
        self._header_bytes = 0  # of the request whose headers are arriving
        # No request, or one whose headers are incomplete; else its body is arriving.
        self._awaiting_headers = True
        self._refusal: str | None = None
        self._counted = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.connected()
        self._live = True
        self._address = self.client[0] if self.client else ""
        self._refusal = self.guard.admit(self._address)
        self._counted = self._refusal is None
        # A refused connection is answered at its first bytes, or dropped soon after.
        wait = self.guard.header_timeout if self._refusal is None else REFUSED_GRACE
        self._header_timer = self.loop.call_later(wait, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._counted:
            self._counted = False
            self.guard.release(self._address)
        if self._live:
            self._live = False
            self.guard.disconnected()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        # Here, not after the data: a request without a body is complete in the same
        # call, and its connection then awaits the next request's headers again.
        self._awaiting_headers = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_headers = True
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            if not self.transport.is_closing():
                self._refuse()
            return
        if self._awaiting_headers:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(self.guard.header_timeout,
                                                          self._headers_late)
            if self._headers_too_large(data):
                return
        super().data_received(data)
        self._after_data()

    def _after_data(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if not self._awaiting_headers and not self.transport.is_closing():
            self._body_timer = self.loop.call_later(self.guard.body_timeout, self._body_idle)

    def send_400_response(self, msg: str) -> None:
        """A request that is not HTTP/1.1 (uvicorn's plain-text answer, and its log line
        for every one, left out): the API's JSON error shape, a throttled report."""
        self.guard.report("invalid_requests", f"a request from {self._address} that is not "
                          "valid HTTP/1.1")
        self.transport.write(_response(400, "Bad Request", "invalid_http",
                                       "the request is not valid HTTP/1.1"))
        self.transport.close()

    def _headers_too_large(self, data: bytes) -> bool:
        """Request line and headers over `max_request_headers_size`: 431 and closed."""
        end = data.find(b"\r\n\r\n")
        size = self._header_bytes + (len(data) if end < 0 else end)
        self._header_bytes = self._header_bytes + len(data) if end < 0 else 0
        if size <= self.guard.max_header_bytes:
            return False
        self.guard.report("headers_too_large", f"request headers from {self._address} over "
                          f"{self.guard.max_header_bytes:,} bytes")
        self.transport.write(_response(
            431, "Request Header Fields Too Large", "headers_too_large",
            f"the request line and headers are over {self.guard.max_header_bytes:,} bytes "
            "(server.max_request_headers_size)"))
        self.transport.close()
        return True

    def _refuse(self) -> None:
        assert self._refusal is not None
        self.guard.report("refused", self._refusal)
        self.transport.write(_response(
            503, "Service Unavailable", "too_many_connections",
            f"Outbox is at its connection limit: {self._refusal}; retry shortly",
            (("Retry-After", str(RETRY_AFTER)),)))
        self.transport.close()

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._refusal is not None:
            self.guard.report("refused", self._refusal)
            self.transport.close()
            return
        if not self._awaiting_headers:
            return
        self.guard.report("header_timeouts", f"no complete request headers from "
                          f"{self._address} within {self.guard.header_timeout:g}s "
                          "(server.header_timeout)")
        if self.cycle is None or self.cycle.response_complete:  # not inside an answer
            self.transport.write(_response(408, "Request Timeout", "request_timeout",
                                           "the request headers took too long "
                                           "(server.header_timeout)"))
        self.transport.close()

    def _body_idle(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self._awaiting_headers:
            return
        if self.flow.read_paused:  # Outbox is the one not reading: wait on
            self._body_timer = self.loop.call_later(self.guard.body_timeout, self._body_idle)
            return
        self.guard.report("body_timeouts", f"a request body from {self._address} sent "
                          f"nothing for {self.guard.body_timeout:g}s (server.body_timeout)")
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None


async def accept_connections(listener: socket.socket, factory: Callable[[], asyncio.Protocol],
                             guard: ConnectionGuard) -> None:
    """Accept on `listener` while the guard has room (instead of the event loop's own
    accept loop, which takes up to a backlog of connections at once and logs a
    traceback for each one over the open-file limit)."""
    loop = asyncio.get_running_loop()
    listener.setblocking(False)
    while True:
        await guard.wait_for_room()
        try:
            connection, _ = await loop.sock_accept(listener)
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: wait for descriptors to free up
            guard.report("accept_errors", f"accept failed: {exc.strerror or exc}")
            await asyncio.sleep(0.5)
            continue
        try:
            await loop.connect_accepted_socket(factory, connection)
        except OSError:
            connection.close()
