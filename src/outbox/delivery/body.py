"""A message body the transport can stream: its size up front, its bytes in chunks.

`pool.deliver` and `SmtpSession.send` take either `bytes` (small messages,
tests) or a `MessageBody` (`delivery.mime_writer.PlannedBody`): the size is
known before MAIL (for the relay's SIZE), and `chunks()` gives a fresh
iterator each time it is called (one per relay). A body's chunks are CRLF
lines already; they may raise `BodyUnavailable` part way, and the transport
then abandons the DATA without its final ".".

`DotStuffer` does RFC 5321 dot-stuffing across chunk boundaries: it carries
whether the previous chunk ended a line, and remembers the last bytes to add
the final CRLF only if the body lacks one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol


class MessageBody(Protocol):
    @property
    def size(self) -> int:
        """Bytes on the wire before dot-stuffing (what SIZE= announces)."""

    @property
    def eight_bit(self) -> bool:
        """Whether any byte is not ASCII (then BODY=8BITMIME where offered)."""

    def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body, CRLF line ends, in chunks; each call starts from the beginning."""


class DotStuffer:
    """Double a "." that starts a line, chunk by chunk."""

    def __init__(self) -> None:
        self._at_line_start = True
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        stuffed = chunk.replace(b"\n.", b"\n..")
        if self._at_line_start and chunk.startswith(b"."):
            stuffed = b"." + stuffed
        self._at_line_start = chunk.endswith(b"\n")
        self._tail = (self._tail + chunk[-2:])[-2:]
        return stuffed

    def finish(self) -> bytes:
        """The CRLF the body still needs before the final "." (usually none)."""
        return b"" if self._tail == b"\r\n" else b"\r\n"
