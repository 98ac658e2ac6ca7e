"""What the database knows of attachment content (`store.blob_index`): blobs,
their uses, uploads, garbage collection, and content kept as database chunks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from outbox.store.values import DeleteContent, Upload


class BlobIndex(Protocol):
    """What the database knows of blobs (the content in `outbox.blobs`): sizes, uses,
    uploads, garbage collection; and the chunks of content held in the database."""

    async def register_blob(self, sha256: str, size: int, keep_until: datetime,
                            now: datetime) -> None:
        """Record stored content (idempotent). It is kept at least until
        `keep_until` even when nothing uses it; a later call only extends that."""

    async def find_blobs(self, sha256s: Sequence[str]) -> dict[str, int]:
        """The size of each of these blobs that is registered."""

    async def create_upload(self, upload: Upload) -> None:
        """Record an upload of registered content; extends the blob's keep_until
        to the upload's expiry."""

    async def find_upload(self, owner: str, id: str, now: datetime) -> Upload | None:
        """The owner's upload with this id, unless it expired."""

    async def collect_blobs(self, now: datetime, keep_finished: timedelta,
                            delete_content: DeleteContent, limit: int = 500) -> tuple[str, ...]:
        """Delete expired uploads, stale partial chunks, and up to `limit` blobs
        past their keep_until with no live use (a message not finished, or
        finished less than `keep_finished` ago; a download link not yet expired),
        with their database chunks; `delete_content(sha256s)` runs inside the
        transaction before it commits (content kept elsewhere, e.g. files).
        Returns the deleted blobs."""

    async def write_blob_chunk(self, key: str, seq: int, data: bytes, now: datetime) -> None:
        """Store one chunk of content held in the database, under a staging key."""

    async def read_blob_chunk(self, key: str, seq: int) -> bytes | None:
        """Chunk `seq` (0-based) of a blob held in the database; None past the end."""

    async def seal_blob_chunks(self, staging_key: str, sha256: str, size: int,
                               keep_until: datetime, now: datetime) -> None:
        """The chunks written under `staging_key` become the blob's (or are
        dropped, when it is stored already), and the blob is registered."""

    async def drop_blob_chunks(self, key: str) -> None:
        """Delete the chunks stored under `key` (an abandoned upload)."""
