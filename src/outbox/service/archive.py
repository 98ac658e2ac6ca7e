"""`outbox backup` and `outbox restore`: the use cases over the store's archive
facet, the blob store and the archive files (`ops.backup`).

Backup: one consistent snapshot of every table (rows, portable), then the content
of every blob the snapshot knows (content is addressed by its sha256 and never
changes, so reading it after the snapshot is still consistent), packed into one
tar with its manifest. Restore: the whole archive is read and checked first;
only then, and only if no `serve`, `worker` or `submission` uses it, is the database
touched, in one transaction; then attachment files. From before that look until the
last file, the restore holds its lock (`store.liveness`): none of those starts
meanwhile, nor a second restore.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import outbox
from outbox.blobs import blob_directory
from outbox.blobs.filesystem import FilesystemBlobs
from outbox.config import Settings
from outbox.core.archive import BLOBS_DIR, Manifest
from outbox.core.recovery import AbandonedClaim, RecoveryVerdict
from outbox.errors import BackupInvalid, BlobCorrupt, Conflict, NotFound
from outbox.ops import backup as files
from outbox.service.outbox import Outbox
from outbox.store.sql.store import head_revision, is_known_revision
from outbox.store.urls import safe_url
from outbox.worker.policy import recovery_policy

CONTENT_TABLE = "blob_chunks"  # blob content goes into the archive as blobs/<sha256>


class Progress(Protocol):
    def begin(self, what: str, total: int | None) -> None: ...

    def advance(self, amount: int) -> None: ...


@dataclass(frozen=True, slots=True)
class BackupResult:
    manifest: Manifest
    missing_blobs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RestoreResult:
    manifest: Manifest
    counts: dict[str, int]
    requeued: tuple[str, ...]
    blobs: int


async def backup(settings: Settings, output: Path, progress: Progress) -> BackupResult:
    outbox_ = await Outbox.open(settings, migrate=False)
    try:
        counts = await outbox_.store.archive.table_counts()
        if "messages" not in counts:
            raise NotFound(f"the database {safe_url(settings.database.url)} holds no Outbox "
                           "schema: nothing to back up", hint="check [database] url")
        with tempfile.TemporaryDirectory(prefix=".outbox-backup-", dir=output.parent) as work:
            writer = files.ArchiveWriter(Path(work))
            progress.begin("tables", sum(n for t, n in counts.items() if t != CONTENT_TABLE))
            dumped = await outbox_.store.archive.dump_tables(
                writer.table_sink(progress.advance), frozenset({CONTENT_TABLE}))
            missing = await _add_blobs(outbox_, writer, progress)
            manifest = writer.write_tar(output, outbox_version=outbox.__version__,
                                        created_at=outbox_.clock(), backend=dumped.backend,
                                        revision=dumped.revision,
                                        blob_store=settings.storage.blobs)
    finally:
        await outbox_.close()
    return BackupResult(manifest, missing)


async def _add_blobs(outbox_: Outbox, writer: files.ArchiveWriter,
                     progress: Progress) -> tuple[str, ...]:
    progress.begin("attachments", sum(size for _, size in writer.blobs))
    missing: list[str] = []
    for sha256, size in writer.blobs:
        try:
            await writer.add_blob(sha256, outbox_.blobs.read(sha256, size), progress.advance)
        except BlobCorrupt:
            missing.append(sha256)  # collected since the snapshot, or lost before it
            (writer.directory / f"{BLOBS_DIR}{sha256}").unlink(missing_ok=True)
    return tuple(missing)


async def restore(settings: Settings, backup_file: Path, progress: Progress, *,
                  force: bool) -> RestoreResult:
    work = Path(tempfile.mkdtemp(prefix=".outbox-restore-", dir=_work_parent(backup_file)))
    try:
        progress.begin("checking", backup_file.stat().st_size if backup_file.is_file() else 0)
        manifest = files.extract_verified(backup_file, work, progress.advance)
        _check_revision(manifest)
        progress.begin("loading", None)
        return await _load(settings, manifest, work, progress, force=force)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _work_parent(backup_file: Path) -> Path:
    return backup_file.parent if backup_file.parent.is_dir() else Path(tempfile.gettempdir())


def _check_revision(manifest: Manifest) -> None:
    if not is_known_revision(manifest.revision):
        raise BackupInvalid(f"the backup's schema revision {manifest.revision!r} is unknown "
                            f"to this Outbox (its newest is {head_revision()})",
                            hint="restore with the Outbox version that made the backup "
                                 f"({manifest.outbox_version}) or a newer one")


async def _load(settings: Settings, manifest: Manifest, work: Path, progress: Progress, *,
                force: bool) -> RestoreResult:
    outbox_ = await Outbox.open(settings, migrate=False)
    try:
        now = outbox_.clock()
        policy, rng = recovery_policy(settings), random.Random()

        def decide(claim: AbandonedClaim) -> RecoveryVerdict:
            return policy.decide(claim, now, rng)

        source = {table: _rows_of(work, table) for table in manifest.tables}
        in_database = settings.storage.blobs == "database"
        if in_database:
            source[CONTENT_TABLE] = lambda: files.chunk_rows(
                work, list(manifest.blob_parts), settings.storage.chunk_size, now.isoformat())
        async with _alone(settings, outbox_):
            loaded = await outbox_.store.archive.load_tables(source, manifest.revision, now,
                                                             decide, force=force)
            if not in_database:
                _install_files(settings, outbox_, manifest, work, progress)
    finally:
        await outbox_.close()
    return RestoreResult(manifest, loaded.counts, loaded.requeued, len(manifest.blob_parts))


@contextlib.asynccontextmanager
async def _alone(settings: Settings, outbox_: Outbox) -> AsyncIterator[None]:
    """The restore's lock, then the look for running processes, then the restore: a
    process starting meanwhile looks for this lock after taking its own, so either
    this look finds it or it finds this lock (`store.liveness`)."""
    liveness = outbox_.store.liveness
    liveness.describe_process("outbox restore")
    other = await liveness.begin_restore()
    if other is not None:
        raise Conflict(f"another restore is replacing the database "
                       f"{safe_url(settings.database.url)} ({other}): nothing was changed",
                       hint="wait until it has finished; restore again then if you still "
                            "need to")
    try:
        await _refuse_while_in_use(settings, outbox_)
        yield
    finally:
        await liveness.end_restore()


async def _refuse_while_in_use(settings: Settings, outbox_: Outbox) -> None:
    """A running `serve` or `worker` goes on from what it holds in memory (its claims,
    the relays' credentials and state, the held mail it has read) and writes over the
    restored rows: it released and delivered mail the backup holds as held; a
    `submission` goes on accepting mail into the database being replaced. `--force`
    is about the data in the database, not this: there is no safe way to restore under
    a running process, and a crashed one does not count (its lock went with it)."""
    holders = await outbox_.store.liveness.holders()
    if holders:
        processes = ("1 Outbox process is" if len(holders) == 1
                     else f"{len(holders)} Outbox processes are")
        raise Conflict(f"{processes} using the database {safe_url(settings.database.url)} "
                       f"({'; '.join(holders)}): nothing was changed",
                       hint="stop every `outbox serve`, `outbox worker` and `outbox "
                            "submission` on it first, then restore")


def _rows_of(work: Path, table: str) -> Callable[[], Iterator[dict[str, Any]]]:
    return lambda: files.read_rows(work, table)


def _install_files(settings: Settings, outbox_: Outbox, manifest: Manifest, work: Path,
                   progress: Progress) -> None:
    """Each blob's file where the filesystem blob store looks for it."""
    store = outbox_.blobs
    if not isinstance(store, FilesystemBlobs):  # [storage] blobs = "filesystem"
        store = FilesystemBlobs(blob_directory(settings), outbox_.store.blob_index,
                                settings.storage.keep_finished)
    progress.begin("attachments", sum(part.size for part in manifest.blob_parts))
    for part in manifest.blob_parts:
        sha256 = part.name.removeprefix(BLOBS_DIR)
        target = store.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{sha256}.restoring")
        shutil.copyfile(files.blob_path(work, sha256), staged)
        staged.replace(target)
        progress.advance(part.size)
