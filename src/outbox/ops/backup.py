"""The backup archive on disk: writing it part by part, and reading it back only
after every part has been checked against the manifest (`core.archive`).

    writer = ArchiveWriter(workdir)
    dumped = await store.archive.dump_tables(writer.table_sink(progress))  # tables/*.jsonl
    await writer.add_blob(sha256, chunks)                                  # blobs/<sha256>
    writer.write_tar(output, manifest_fields)         # manifest.json first, then the parts

    manifest = extract_verified(backup, workdir)      # BackupInvalid, or every part sound
    rows = read_rows(workdir, "messages")             # the portable rows again

A part is hashed as it is written and as it is read; nothing is restored from an
archive until the whole of it has been read and found sound.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from outbox.core.archive import (
    BLOBS_DIR,
    MANIFEST,
    TABLES_DIR,
    ArchiveFault,
    Manifest,
    Part,
    PartCheck,
    missing_after,
    next_expected,
)
from outbox.errors import BackupInvalid

COPY_CHUNK = 1024 * 1024
Advance = Callable[[int], None]


@dataclass
class ArchiveWriter:
    """Parts written into `directory` (hashed as they go), then one tar."""

    directory: Path
    parts: list[Part] = field(default_factory=list)
    blobs: list[tuple[str, int]] = field(default_factory=list)  # from the `blobs` table

    def table_sink(self, advance: Advance) -> Callable[[str, Iterator[dict[str, Any]]], int]:
        def sink(table: str, rows: Iterator[dict[str, Any]]) -> int:
            name = f"{TABLES_DIR}{table}.jsonl"
            path = self.directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            digest, size, count = hashlib.sha256(), 0, 0
            with open(path, "wb") as out:
                for row in rows:
                    line = json.dumps(row, separators=(",", ":")).encode() + b"\n"
                    out.write(line)
                    digest.update(line)
                    size, count = size + len(line), count + 1
                    if table == "blobs":
                        self.blobs.append((row["sha256"], int(row["size"])))
                    if count % 500 == 0:
                        advance(500)
            advance(count % 500)
            self.parts.append(Part(name, size, digest.hexdigest(), count))
            return count

        return sink

    async def add_blob(self, sha256: str, chunks: AsyncIterator[bytes],
                       advance: Advance) -> None:
        name = f"{BLOBS_DIR}{sha256}"
        path = self.directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with open(path, "wb") as out:
            async for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                advance(len(chunk))
        self.parts.append(Part(name, size, digest.hexdigest()))

    def write_tar(self, output: Path, *, outbox_version: str, created_at: datetime,
                  backend: str, revision: str, blob_store: str) -> Manifest:
        """The archive, written beside `output` and renamed over it when complete."""
        manifest = Manifest(outbox_version, created_at.isoformat(), backend, revision,
                            blob_store, tuple(self.parts))
        partial = output.with_name(f".{output.name}.partial")
        with tarfile.open(partial, "w") as tar:
            data = manifest.to_json()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(data), int(created_at.timestamp())
            _add_bytes(tar, info, data)
            for part in self.parts:
                tar.add(self.directory / part.name, arcname=part.name, recursive=False)
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        partial.replace(output)
        return manifest


def _add_bytes(tar: tarfile.TarFile, info: tarfile.TarInfo, data: bytes) -> None:
    import io

    tar.addfile(info, io.BytesIO(data))


def extract_verified(backup: Path, directory: Path, advance: Advance) -> Manifest:
    """Every part of `backup` into `directory`, each checked against the manifest;
    `BackupInvalid` naming the first fault (and `directory` may hold a part of it)."""
    if not backup.is_file():
        raise BackupInvalid(f"{backup} is not a file", field="file",
                            hint="name the .tar file `outbox backup -o` wrote")
    try:
        with tarfile.open(backup, "r|") as tar:
            return _extract(tar, directory, advance)
    except ArchiveFault as exc:
        raise BackupInvalid(f"{backup} cannot be restored: {exc}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupInvalid(f"{backup} cannot be restored: it is not a complete tar archive "
                            f"({exc}: truncated or not a backup)") from None


def _extract(tar: tarfile.TarFile, directory: Path, advance: Advance) -> Manifest:
    first = tar.next()
    if first is None or first.name != MANIFEST:
        raise ArchiveFault("its first member is not manifest.json (not an Outbox backup)")
    manifest = Manifest.from_json(_read_member(tar, first))
    seen = 0
    while (member := tar.next()) is not None:
        expected = next_expected(manifest, seen, member.name)
        check = _copy_member(tar, member, expected, directory / expected.name, advance)
        fault = check.fault()
        if fault:
            raise ArchiveFault(fault)
        seen += 1
    missing = missing_after(manifest, seen)
    if missing:
        raise ArchiveFault(missing)
    return manifest


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    source = tar.extractfile(member)
    if source is None:
        raise ArchiveFault(f"its member {member.name} is not a file")
    return source.read()


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, expected: Part,
                 target: Path, advance: Advance) -> PartCheck:
    source = tar.extractfile(member)
    if source is None:
        raise ArchiveFault(f"its member {member.name} is not a file")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size, lines = hashlib.sha256(), 0, 0
    with open(target, "wb") as out:
        while chunk := source.read(COPY_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
            advance(len(chunk))
    return PartCheck(expected, size, digest.hexdigest(), lines)


def read_rows(directory: Path, table: str) -> Iterator[dict[str, Any]]:
    """A table's rows from its extracted part."""
    with open(directory / f"{TABLES_DIR}{table}.jsonl", "rb") as lines:
        for line in lines:
            yield json.loads(line)


def blob_path(directory: Path, sha256: str) -> Path:
    return directory / f"{BLOBS_DIR}{sha256}"


def chunk_rows(directory: Path, blobs: list[Part], chunk_size: int,
               created_at: str) -> Iterator[dict[str, Any]]:
    """The extracted blobs as `blob_chunks` rows (the database blob store)."""
    import base64

    for part in blobs:
        sha256 = part.name.removeprefix(BLOBS_DIR)
        with open(blob_path(directory, sha256), "rb") as content:
            seq = 0
            while data := _read_exactly(content, chunk_size):
                yield {"key": sha256, "seq": seq, "data": base64.b64encode(data).decode(),
                       "created_at": created_at}
                seq += 1


def _read_exactly(source: IO[bytes], size: int) -> bytes:
    return source.read(size)
