"""Blobs as rows: chunks of `[storage] chunk_size` (1 MiB) in `blob_chunks`.

For several nodes on PostgreSQL without a shared disk. An upload streams its
chunks under a staging key while it is hashed, each chunk its own short
transaction; sealing renames them to the sha256 and registers the blob in
one transaction (or drops them when the same content is already stored).
An upload that dies half way leaves staging chunks that the collector
removes after a few hours. Reading fetches one chunk per query. Both keep one
query in flight while the caller works on the previous chunk (one more chunk
in memory, and the database's round trips overlap the encoding and sending).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from outbox.blobs.base import Hasher, StoredBlob, rechunk
from outbox.errors import BlobCorrupt, OutboxError
from outbox.store.base import BlobIndex

STAGING_PREFIX = "staging/"


class DatabaseBlobs:
    def __init__(self, index: BlobIndex, chunk_size: int, keep_finished: timedelta) -> None:
        self._index = index
        self.chunk_size = chunk_size
        self._keep_finished = keep_finished

    async def put(self, chunks: AsyncIterable[bytes], *, max_size: int, keep_until: datetime,
                  now: datetime) -> StoredBlob:
        hasher = Hasher(max_size)
        staging = f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        writing: asyncio.Future[None] | None = None
        try:
            seq = 0
            async for piece in rechunk(chunks, self.chunk_size):
                hasher.update(piece)
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(
                    self._index.write_blob_chunk(staging, seq, piece, now))
                seq += 1
            if writing is not None:
                await writing
            stored = hasher.stored()
            await self._index.seal_blob_chunks(staging, stored.sha256, stored.size,
                                                          keep_until, now)
        except Exception:
            await _settled(writing)
            with contextlib.suppress(OutboxError):  # else the collector drops them later
                await self._index.drop_blob_chunks(staging)
            raise
        return stored

    async def put_bytes(self, data: bytes, *, keep_until: datetime, now: datetime) -> StoredBlob:
        async def whole() -> AsyncIterator[bytes]:
            yield data

        return await self.put(whole(), max_size=len(data), keep_until=keep_until, now=now)

    async def read(self, sha256: str, size: int) -> AsyncIterator[bytes]:
        seq = 0
        reading = asyncio.ensure_future(self._index.read_blob_chunk(sha256, 0))
        try:
            while (chunk := await reading) is not None:
                reading = asyncio.ensure_future(self._index.read_blob_chunk(sha256, seq + 1))
                yield chunk
                seq += 1
        finally:
            await _settled(reading)
        if seq == 0 and size > 0:
            raise self._missing(sha256)

    async def head(self, sha256: str, size: int, limit: int) -> bytes:
        first = await self._index.read_blob_chunk(sha256, 0)
        if first is None and size > 0:
            raise self._missing(sha256)
        return (first or b"")[:limit]

    async def check(self, sha256: str, size: int) -> None:
        found = (await self._index.find_blobs([sha256])).get(sha256)
        if found is None:
            raise self._missing(sha256)
        if found != size:
            raise BlobCorrupt(f"blob {sha256[:16]} is {found:,} bytes, not {size:,}")

    def _missing(self, sha256: str) -> BlobCorrupt:
        return BlobCorrupt(f"the content of blob {sha256[:16]} is missing from the database")

    def delete_content(self, sha256s: Sequence[str]) -> None:
        """Nothing to do: the collecting transaction deletes the chunks itself."""

    async def collect(self, now: datetime) -> tuple[str, ...]:
        return await self._index.collect_blobs(now, self._keep_finished, self.delete_content)


async def _settled(pending: asyncio.Future[Any] | None) -> None:
    """Let a query still in flight finish (cancelling one mid-way costs its connection)."""
    if pending is not None and not pending.done():
        with contextlib.suppress(Exception):
            await asyncio.shield(pending)
    elif pending is not None and not pending.cancelled():
        pending.exception()  # retrieved: no "never retrieved" warning
