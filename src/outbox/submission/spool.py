"""A large message over SMTP without holding it whole (issue 15: a 20 MB attachment
took serve 229 MiB of memory, bench/memory_smtp.py).

`read_data` reads DATA as aiosmtpd does (the same limits and replies) into `Data`:
in memory up to SPOOL_AT bytes, in a temporary file past them. `split` then stores
each large base64 attachment of a spooled message in the blob store as it reads it
(`AttachmentFiles.spool`, as the HTTP API does with a long content_base64 value) and
returns the rest, the skeleton, with a stand-in for each such body that
`core.inbound.read_message` maps back to its stored file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import IO

from outbox.core.mime_split import Span, large_parts
from outbox.service.files import AttachmentFiles

SPOOL_AT = 1024 * 1024  # DATA longer than this goes to a temporary file
SPLIT_AT = 64 * 1024  # a base64 body longer than this is stored as it is read
_PIECE = 1024 * 1024  # bytes read from the spool at a time


class DataState(enum.Enum):
    OK = "ok"
    LINE_TOO_LONG = "line too long"
    TOO_MUCH = "too much"


class Data:
    """The message as DATA carried it, dot-unstuffed."""

    def __init__(self) -> None:
        self.size = 0
        self._memory = bytearray()
        self._file: IO[bytes] | None = None

    @property
    def spooled(self) -> bool:
        return self._file is not None

    def add(self, line: bytes) -> None:
        self.size += len(line)
        if self._file is not None:
            self._file.write(line)
            return
        self._memory += line
        if len(self._memory) > SPOOL_AT:
            self._file = tempfile.TemporaryFile(prefix="outbox-smtp-")  # noqa: SIM115
            self._file.write(self._memory)
            self._memory = bytearray()

    def discard(self) -> None:
        """Over a limit: nothing more is kept (the client's reply comes at its end)."""
        self.close()
        self._memory = bytearray()

    def content(self) -> bytes:
        """The whole message in memory (only for one that was not spooled)."""
        assert self._file is None
        return bytes(self._memory)

    def lines(self) -> Iterator[bytes]:
        """A spooled message's lines, from its start."""
        assert self._file is not None
        self._file.seek(0)
        yield from self._file

    def read(self, start: int, end: int) -> Iterator[bytes]:
        assert self._file is not None
        self._file.seek(start)
        while start < end:
            piece = self._file.read(min(_PIECE, end - start))
            if not piece:
                return
            start += len(piece)
            yield piece

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def read_data(reader: asyncio.StreamReader, limit: int | None,
                    line_limit: int) -> tuple[DataState, Data]:
    """DATA up to the lone ".", as aiosmtpd's smtp_DATA reads it: a line over the
    reader's limit or `line_limit`, or more than `limit` bytes in all, is drained and
    its state returned (the reply waits for the end, RFC 5321 4.2.5)."""
    data = Data()
    try:
        return await _read_lines(reader, limit, line_limit, data), data
    except BaseException:  # the connection went away mid-DATA
        data.close()
        raise


async def _read_lines(reader: asyncio.StreamReader, limit: int | None, line_limit: int,
                      data: Data) -> DataState:
    state = DataState.OK
    fragments: list[bytes] = []  # a line that came in pieces (over the reader's limit)
    mid_line = False
    received = 0  # bytes as they came, dots and all: what the limit counts, as aiosmtpd's
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as exc:
            if state is DataState.OK:
                state = DataState.LINE_TOO_LONG
                data.discard()
            line = await reader.read(exc.consumed)
        if not mid_line and line == b".\r\n":
            return state
        received += len(line)
        mid_line = not line.endswith(b"\r\n")
        if state is DataState.OK and limit and received > limit:
            state = DataState.TOO_MUCH
            data.discard()
        if state is not DataState.OK:
            fragments.clear()
            continue  # read to the end, not kept
        fragments.append(line)
        if mid_line:
            continue
        whole = b"".join(fragments) if len(fragments) > 1 else fragments[0]
        fragments.clear()
        if len(whole) > line_limit:
            state = DataState.LINE_TOO_LONG
            data.discard()
            continue
        data.add(whole[1:] if whole.startswith(b".") else whole)


async def split(data: Data, files: AttachmentFiles,
                now: datetime) -> tuple[bytes, dict[bytes, str]] | None:
    """The skeleton of a spooled message and, for each stand-in body in it, the token
    of the file stored in its place; None when it has no large base64 body (or is too
    odd to split): then it is read whole."""
    # In a thread: reading 27 MB line by line holds a loop that answers the API too.
    spans = await asyncio.to_thread(large_parts, data.lines(), SPLIT_AT)
    if not spans:
        return None
    skeleton = bytearray()
    spooled: dict[bytes, str] = {}
    at = 0
    try:
        for span in spans:
            skeleton += b"".join(data.read(at, span.start))
            # Random per message: a client cannot write a stand-in of its own.
            stand_in = f"outbox-spooled-part:{secrets.token_hex(16)}".encode()
            spooled[stand_in] = await files.spool(_decoded(data, span), now)
            skeleton += base64.b64encode(stand_in) + b"\r\n"
            at = span.end
    except BaseException:  # the blob store failed: the files stored so far are not kept
        files.forget(spooled.values())
        raise
    skeleton += b"".join(data.read(at, data.size))
    return bytes(skeleton), spooled


async def _decoded(data: Data, span: Span) -> AsyncIterator[bytes]:
    """A base64 body's bytes, decoded a piece at a time; characters outside the
    alphabet are skipped and missing padding added, as the stdlib's parser does."""
    left = b""
    for piece in data.read(span.start, span.end):
        chars = left + piece.translate(None, _NOT_ALPHABET)
        whole = len(chars) - len(chars) % 4
        left = chars[whole:]
        if whole:
            yield binascii.a2b_base64(chars[:whole])
        await asyncio.sleep(0)  # a long body leaves room for other clients
    left = left.rstrip(b"=")
    if len(left) > 1:
        yield binascii.a2b_base64(left + b"=" * (-len(left) % 4))


_NOT_ALPHABET = bytes(set(range(256)) - set(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="))
