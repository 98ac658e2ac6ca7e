"""Blobs as files: `<blob_dir>/ab/cd/abcd...` (the sha256), written whole or not at all.

An upload streams into `<blob_dir>/tmp/<random>.part` while it is hashed,
is fsync'd, then registered in the database and only then renamed to its
sha256 (and the directory fsync'd): a blob is never visible half written,
and a collector that deleted the same content a moment earlier (inside its
transaction, which registration waits for) cannot delete the new file.
Reads and writes run in worker threads, about 1 MiB at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from outbox.blobs.base import READ_CHUNK, Hasher, StoredBlob, rechunk
from outbox.errors import BlobCorrupt
from outbox.store.base import BlobIndex

WRITE_CHUNK = 1024 * 1024
# File I/O on threads of its own (few threads: few malloc arenas holding freed buffers).
_IO = ThreadPoolExecutor(max_workers=4, thread_name_prefix="outbox-blobs")


async def _in_thread(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_IO, call, *args)
STALE_PARTIAL = timedelta(hours=6)  # a .part file this old belongs to a dead upload
T = TypeVar("T")


class FilesystemBlobs:
    def __init__(self, directory: Path, index: BlobIndex, keep_finished: timedelta) -> None:
        self.directory = directory
        self._index = index
        self._keep_finished = keep_finished

    def path(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / sha256[2:4] / sha256

    # -- writing -------------------------------------------------------------------------

    async def put(self, chunks: AsyncIterable[bytes], *, max_size: int, keep_until: datetime,
                  now: datetime) -> StoredBlob:
        hasher = Hasher(max_size)
        partial, handle = await _in_thread(self._open_partial)
        try:
            async for piece in rechunk(chunks, WRITE_CHUNK):
                await _in_thread(_hash_and_write, hasher, handle, piece)
            await _in_thread(_sync_and_close, handle)
            stored = hasher.stored()
            await self._index.register_blob(stored.sha256, stored.size, keep_until, now)
            await _in_thread(self._install, partial, stored.sha256)
        except BaseException:
            handle.close()
            partial.unlink(missing_ok=True)
            raise
        return stored

    async def put_bytes(self, data: bytes, *, keep_until: datetime, now: datetime) -> StoredBlob:
        async def whole() -> AsyncIterator[bytes]:
            yield data

        return await self.put(whole(), max_size=len(data), keep_until=keep_until, now=now)

    def _open_partial(self) -> tuple[Path, BinaryIO]:
        staging = self.directory / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        partial = staging / f"{uuid.uuid4().hex}.part"
        return partial, open(partial, "xb")  # put closes it

    def _install(self, partial: Path, sha256: str) -> None:
        final = self.path(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)
        _fsync_directory(final.parent)

    # -- reading -------------------------------------------------------------------------

    async def read(self, sha256: str, size: int) -> AsyncIterator[bytes]:
        handle = await _in_thread(self._open, sha256)
        try:
            while chunk := await _in_thread(handle.read, READ_CHUNK):
                yield chunk
        finally:
            handle.close()

    async def head(self, sha256: str, size: int, limit: int) -> bytes:
        handle = await _in_thread(self._open, sha256)
        try:
            return await _in_thread(handle.read, limit)
        finally:
            handle.close()

    async def check(self, sha256: str, size: int) -> None:
        try:
            found = (await _in_thread(self.path(sha256).stat)).st_size
        except FileNotFoundError:
            raise self._missing(sha256) from None
        if found != size:
            raise BlobCorrupt(f"the file of blob {sha256[:16]} is {found:,} bytes, not "
                              f"{size:,} as when it was stored")

    def _open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path(sha256), "rb")  # the caller closes it
        except FileNotFoundError:
            raise self._missing(sha256) from None

    def _missing(self, sha256: str) -> BlobCorrupt:
        return BlobCorrupt(f"the file of blob {sha256[:16]} is missing from {self.directory}")

    # -- collecting ----------------------------------------------------------------------

    def delete_content(self, sha256s: Sequence[str]) -> None:
        for sha256 in sha256s:
            self.path(sha256).unlink(missing_ok=True)

    async def collect(self, now: datetime) -> tuple[str, ...]:
        deleted = await self._index.collect_blobs(now, self._keep_finished, self.delete_content)
        await _in_thread(self._sweep_partials)
        return deleted

    def _sweep_partials(self) -> None:
        cutoff = time.time() - STALE_PARTIAL.total_seconds()
        staging = self.directory / "tmp"
        if not staging.is_dir():
            return
        for partial in staging.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if partial.stat().st_mtime < cutoff:
                    partial.unlink()


def _hash_and_write(hasher: Hasher, handle: BinaryIO, piece: bytes) -> None:
    hasher.update(piece)
    handle.write(piece)


def _sync_and_close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
