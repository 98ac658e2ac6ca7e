"""Replies to pipelined commands (RFC 2920), read in order.

With PIPELINING the session writes MAIL, every RCPT and DATA at once and then
reads their replies one by one. aiosmtplib's protocol keeps one reply at a
time and drops bytes that arrive while no read is pending, so replies that
come together or early would be lost. While such a group is outstanding,
`PipelinedReplies` takes the connection's incoming bytes instead: it keeps
them all and hands out one reply per `next()`. Loss of the connection, EOF
and flow control still reach aiosmtplib's protocol, so the client sees a
dropped connection as before. `release()` gives the connection back.
"""

from __future__ import annotations

import asyncio

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol

from outbox.transports import writable

_MAX_LINE = 8192  # aiosmtplib's own limit on one reply line


class PipelinedReplies(asyncio.Protocol):
    """Holds a connection's incoming bytes while pipelined replies are read."""

    def __init__(self, protocol: SMTPProtocol) -> None:
        transport = writable(protocol.transport)
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._inner = protocol
        self._transport = transport
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self._lost: BaseException | None = None
        transport.set_protocol(self)

    # the transport's callbacks --------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        self._arrived.set()

    def eof_received(self) -> bool | None:
        self._lost = aiosmtplib.SMTPServerDisconnected("Unexpected EOF received")
        self._arrived.set()
        return False  # close the transport, as aiosmtplib does

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            self._lost = aiosmtplib.SMTPServerDisconnected(
                "Connection lost" + (f": {exc}" if exc else ""))
        self._arrived.set()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # the session's side ---------------------------------------------------------

    async def next(self, timeout: float) -> aiosmtplib.SMTPResponse:
        """The next reply, waiting at most `timeout` seconds for it."""
        # Replies to a pipelined group mostly arrive together: a reply already here
        # needs no timer, which costs more than reading it (issue 15).
        response = self._take()
        if response is not None:
            return response
        try:
            async with asyncio.timeout(timeout):
                while True:
                    response = self._take()
                    if response is not None:
                        return response
                    if self._lost is not None:
                        raise self._lost
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError as exc:
            raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") \
                from exc

    def release(self) -> bool:
        """Give the connection back to aiosmtplib; False if the relay sent more than
        it was asked for (the session is then out of step and must not be reused)."""
        if self._lost is None and not self._transport.is_closing():
            self._transport.set_protocol(self._inner)
        return not self._buffer

    def _take(self) -> aiosmtplib.SMTPResponse | None:
        """One whole reply from the front of the buffer (its lines joined as aiosmtplib
        joins them), or None while it is incomplete."""
        lines: list[bytes] = []
        offset = 0
        while (end := self._buffer.find(b"\n", offset)) != -1:
            line = bytes(self._buffer[offset:end + 1])
            offset = end + 1
            if len(line) > _MAX_LINE or not line[:3].isdigit():
                raise aiosmtplib.SMTPResponseException(
                    -1, f"Malformed SMTP response line: {line[:80]!r}")
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                del self._buffer[:offset]
                text = b"\n".join(lines).decode("utf-8", "surrogateescape")
                return aiosmtplib.SMTPResponse(int(line[:3]), text)
        if len(self._buffer) - offset > _MAX_LINE:
            raise aiosmtplib.SMTPResponseException(-1, "Response too long")
        return None
