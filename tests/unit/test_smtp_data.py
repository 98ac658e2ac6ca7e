"""submission.spool: DATA read as aiosmtpd reads it (dot-unstuffed, its limits), in
memory or past SPOOL_AT in a file, and a stored base64 body decoded piece by piece."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outbox.core.mime_split import Span
from outbox.submission import spool
from outbox.submission.spool import Data, DataState, read_data


def reader_with(*chunks: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1001)  # aiosmtpd's, line_length_limit
    for chunk in chunks:
        reader.feed_data(chunk)
    return reader


async def read(*chunks: bytes, limit: int | None = None) -> tuple[DataState, Data, bytes]:
    reader = reader_with(*chunks, b"NEXT\r\n")
    state, data = await read_data(reader, limit, 1001)
    after = await reader.readuntil(b"\r\n")  # DATA ended at its lone dot, not later
    return state, data, after


def whole(data: Data) -> bytes:
    return b"".join(data.lines()) if data.spooled else data.content()


async def test_dots_are_unstuffed_and_the_lone_dot_ends_it() -> None:
    state, data, after = await read(b"a\r\n..b\r\n.c\r\n", b"\r\n.\r\n")
    assert (state, whole(data), data.size, after) == (DataState.OK, b"a\r\n.b\r\nc\r\n\r\n",
                                                      12, b"NEXT\r\n")
    assert not data.spooled


async def test_a_line_in_pieces_is_one_line() -> None:
    reader = reader_with(b"ab")
    task = asyncio.create_task(read_data(reader, None, 1001))
    await asyncio.sleep(0)
    reader.feed_data(b"c\r\n.\r\n")
    state, data = await task
    assert (state, whole(data)) == (DataState.OK, b"abc\r\n")


async def test_past_spool_at_the_message_is_in_a_file() -> None:
    lines = [os.urandom(499).hex().encode() + b"\r\n" for _ in range(1200)]
    state, data, after = await read(*lines, b".\r\n")
    assert state is DataState.OK and data.spooled and after == b"NEXT\r\n"
    assert whole(data) == b"".join(lines) and data.size > spool.SPOOL_AT
    assert b"".join(data.read(1000, 3000)) == b"".join(lines)[1000:3000]
    data.close()


async def test_more_than_the_limit_is_read_to_its_end_and_not_kept() -> None:
    state, data, after = await read(b"x" * 998 + b"\r\n", b"y" * 998 + b"\r\n", b".\r\n",
                                    limit=1500)
    assert (state, whole(data), after) == (DataState.TOO_MUCH, b"", b"NEXT\r\n")


@pytest.mark.parametrize("length", [1002, 5000])
async def test_a_line_over_the_limit_is_read_to_the_end_and_not_kept(length: int) -> None:
    state, data, after = await read(b"ok\r\n", b"z" * length + b"\r\n", b"fine\r\n",
                                    b".\r\n")
    assert (state, whole(data), after) == (DataState.LINE_TOO_LONG, b"", b"NEXT\r\n")


async def decoded(body: bytes, piece: int, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """`body` decoded from a spooled message, read back `piece` bytes at a time."""
    monkeypatch.setattr(spool, "_PIECE", piece)
    monkeypatch.setattr(spool, "SPOOL_AT", 0)  # to a file, however small
    data = Data()
    for line in (b"head\r\n", *body.splitlines(keepends=True), b"--tail\r\n"):
        data.add(line)
    assert data.spooled
    try:
        return b"".join([chunk async for chunk in spool._decoded(data, Span(6, 6 + len(body)))])
    finally:
        data.close()


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 200))
def test_a_body_decodes_as_a_whole_decode_would(payload: bytes, piece: int) -> None:
    body = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert asyncio.run(decoded(body, piece, monkeypatch)) == payload


async def test_stray_characters_are_skipped_and_missing_padding_added(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert await decoded(b"aGVs*bG8g\r\nd29y!bGQ\r\n", 3, monkeypatch) == b"hello world"


class FailingSecondStore:
    """AttachmentFiles' spool and forget, with a blob store that fails on its second file."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.forgotten: list[str] = []

    async def spool(self, chunks: object, now: object) -> str:
        if self.stored:
            raise OSError("disk full")
        self.stored.append("token-1")
        return "token-1"

    def forget(self, tokens: object) -> None:
        self.forgotten += list(tokens)  # type: ignore[call-overload]


async def test_files_stored_before_the_blob_store_failed_are_forgotten(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "SPOOL_AT", 0)
    monkeypatch.setattr(spool, "SPLIT_AT", 100)
    message = (b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
               + b"".join(b"--B\r\nContent-Type: application/zip\r\n"
                          b"Content-Transfer-Encoding: base64\r\n\r\n"
                          + base64.encodebytes(os.urandom(500)).replace(b"\n", b"\r\n")
                          for _ in range(2)) + b"--B--\r\n")
    data = Data()
    for line in message.splitlines(keepends=True):
        data.add(line)
    files = FailingSecondStore()
    with pytest.raises(OSError, match="disk full"):
        await spool.split(data, files, None)  # type: ignore[arg-type]
    assert files.forgotten == ["token-1"]
    data.close()
