"""The message body on the wire, after the relay's 354.

`write_data` (bytes) and `write_body` (a streamed `MessageBody`) write the
dot-stuffed body and then the final ".", with back-pressure. Both keep two
promises:

- When they return, the final "." has been handed to the connection and the
  relay may have the message. When they raise, the final "." never left this
  process (it was not written, or it still sat in the connection's buffer),
  so a failure here is never mistaken for "sent".
- They never wait on the relay for longer than `progress_timeout` at a time:
  a relay that stops reading (its window stays full) makes them raise
  `DataStalled`, an aiosmtplib timeout that `errors.map_smtp_errors` turns
  into a `COMMAND_TIMEOUT` at the DATA stage. The caller must then abort the
  connection, which throws the unsent rest away (the final "." with it).
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, SMTPProtocol, normalize_message_line_endings

from outbox.delivery.body import DotStuffer, MessageBody

_DATA_CHUNK = 64 * 1024
_FINAL_DOT = b".\r\n"


class DataStalled(aiosmtplib.SMTPTimeoutError):
    """The relay stopped taking the message while it was being written."""


def dot_stuff(message: bytes) -> bytes:
    """CRLF line endings, a final CRLF, and a "." doubled at the start of a line.
    (A streamed body does this per chunk with `body.DotStuffer`.)"""
    if not _crlf_only(message):
        message = normalize_message_line_endings(message)
    if message.startswith(b".") or b"\n." in message:
        message = PERIOD_REGEX.sub(b"..", message)
    return message


def _crlf_only(message: bytes) -> bool:
    """Every line ends in CRLF, the last one too: what the MIME writer makes, checked
    by three counts in C for a third of what rewriting every line ending costs."""
    pairs = message.count(b"\r\n")
    return (message.count(b"\r") == pairs == message.count(b"\n")
            and message.endswith(b"\r\n"))


async def write_data(protocol: SMTPProtocol, body: bytes, *, progress_timeout: float) -> None:
    """Write an already dot-stuffed body and the final ".", with back-pressure
    (the promises are in the module docstring)."""
    # aiosmtplib drops a reply that arrives while no read is pending; a relay
    # may answer before the body is done (a 552 mid-stream), so arm it now.
    protocol._response_pending = True
    view = memoryview(body)
    tail_start = max(len(view) - _DATA_CHUNK, 0)
    for start in range(0, tail_start, _DATA_CHUNK):
        protocol.write(bytes(view[start:min(start + _DATA_CHUNK, tail_start)]))
        await _drained(protocol, progress_timeout)
    await _write_last(protocol, bytes(view[tail_start:]), progress_timeout)


async def write_body(protocol: SMTPProtocol, body: MessageBody, *,
                     progress_timeout: float) -> None:
    """Stream a body chunk by chunk, dot-stuffed across chunk boundaries, then the
    final "." (the same promises as `write_data`). If the body raises part way,
    the exception propagates and the final "." is never written."""
    protocol._response_pending = True  # as in write_data: an early reply is kept
    stuffer = DotStuffer()
    async with aclosing(body.chunks()) as chunks:
        async for chunk in chunks:
            protocol.write(stuffer.feed(chunk))
            await _drained(protocol, progress_timeout)
    await _write_last(protocol, stuffer.finish(), progress_timeout)


def size_of(message: bytes | MessageBody) -> int:
    return len(message) if isinstance(message, bytes) else message.size


async def _write_last(protocol: SMTPProtocol, tail: bytes, progress_timeout: float) -> None:
    if not protocol.is_connected:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost during DATA")
    protocol.write(tail + _FINAL_DOT)
    # Waiting here only happens while the buffer is over its high-water mark,
    # so the final "." (its last bytes) has not left: a stall is still DATA.
    await _drained(protocol, progress_timeout)


async def _drained(protocol: SMTPProtocol, timeout: float) -> None:
    """Wait until the connection's buffer is low again, for at most `timeout`."""
    if not protocol._paused:  # below its high-water mark: nothing to wait for, no timer
        await protocol._drain_helper()  # raises at once if the connection is gone
        return
    try:
        async with asyncio.timeout(timeout):
            await protocol._drain_helper()
    except TimeoutError as exc:
        raise DataStalled(f"the relay stopped taking the message: no progress for "
                          f"{timeout:g}s") from exc
