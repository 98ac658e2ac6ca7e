"""The `BlobStore` protocol, the shared streaming-and-hashing step, and the factory."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from outbox.errors import MessageTooLarge

READ_CHUNK = 57 * 18396  # ~1 MiB, whole base64 lines: 1,048,572 bytes


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    size: int


class BlobStore(Protocol):
    async def put(self, chunks: AsyncIterable[bytes], *, max_size: int, keep_until: datetime,
                  now: datetime) -> StoredBlob:
        """Store streamed content and register it (kept at least until
        `keep_until`). Over `max_size` bytes: `MessageTooLarge`, nothing kept."""

    async def put_bytes(self, data: bytes, *, keep_until: datetime, now: datetime) -> StoredBlob:
        """Store content already in memory (a small `content_base64` file)."""

    def read(self, sha256: str, size: int) -> AsyncIterator[bytes]:
        """The content in chunks of about 1 MiB; `BlobCorrupt` if it is missing."""

    async def head(self, sha256: str, size: int, limit: int) -> bytes:
        """The first `limit` bytes (for content sniffing)."""

    async def check(self, sha256: str, size: int) -> None:
        """`BlobCorrupt` unless the content is there with this size (cheap: no hashing)."""

    def delete_content(self, sha256s: Sequence[str]) -> None:
        """Delete stored content; called inside the collecting transaction."""

    async def collect(self, now: datetime) -> tuple[str, ...]:
        """Delete what nothing uses any more (see `Store.collect_blobs`)."""


class Hasher:
    """Counts and hashes content as it streams past, refusing more than `max_size`."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.size = 0
        self._sha256 = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_size:
            raise MessageTooLarge(f"the upload is over the limit of {self.max_size:,} bytes "
                                  "(limits.max_attachment_size)")
        self._sha256.update(chunk)

    def stored(self) -> StoredBlob:
        return StoredBlob(self._sha256.hexdigest(), self.size)


async def rechunk(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """The same bytes in pieces of exactly `size` (the last one shorter)."""
    pending = bytearray()
    async for chunk in chunks:
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)
