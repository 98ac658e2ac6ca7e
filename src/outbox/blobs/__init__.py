"""Attachment content, addressed by sha256: the blob stores.

    blobs = open_blob_store(settings, store)
    stored = await blobs.put(chunks, max_size=..., keep_until=..., now=...)  # streamed, hashed
    async for chunk in blobs.read(stored.sha256, stored.size): ...         # raw content

Two implementations of one `BlobStore` protocol: files under a directory
(`filesystem.py`, the default) and 1 MiB chunks in the database
(`database.py`, for several nodes on PostgreSQL without a shared disk). The
metadata (size, uses, uploads, garbage collection) is always in the
database, through the `Store` verbs. Neither holds a whole file in memory.

Reading raises `BlobCorrupt` when the content is missing; the sha256 is
checked by whoever reads a whole blob (`delivery.mime_writer`,
`api.downloads`), since only they know when it is whole.
"""

from __future__ import annotations

from pathlib import Path

from outbox.blobs.base import BlobStore, StoredBlob
from outbox.blobs.database import DatabaseBlobs
from outbox.blobs.filesystem import FilesystemBlobs
from outbox.config import Settings
from outbox.store.base import Store
from outbox.store.urls import database_url

__all__ = ["BlobStore", "StoredBlob", "blob_directory", "open_blob_store"]


def blob_directory(settings: Settings) -> Path:
    """[storage] blob_dir, else `outbox-blobs` next to the SQLite database, else
    ./outbox-blobs."""
    if settings.storage.blob_dir:
        return Path(settings.storage.blob_dir)
    url = database_url(settings.database.url)
    if url.get_backend_name() == "sqlite" and url.database:
        return Path(url.database).parent / "outbox-blobs"
    return Path("outbox-blobs")


def open_blob_store(settings: Settings, store: Store) -> BlobStore:
    storage = settings.storage
    if storage.blobs == "database":
        return DatabaseBlobs(store.blob_index, storage.chunk_size, storage.keep_finished)
    return FilesystemBlobs(blob_directory(settings), store.blob_index, storage.keep_finished)
