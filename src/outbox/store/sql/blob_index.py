"""`SqlBlobIndex`: `store.base.BlobIndex` over a `Runner`, and its SQL: blob
registration, uses, uploads, garbage collection and database-held chunks.

A blob is alive while its own `keep_until` has not passed or a live use
exists (see `live_use`); `collect` removes the others. Registration is an
upsert that only extends `keep_until`; under PostgreSQL it waits for a
collector holding the row, so new content is never registered against a
blob that is being deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, exists, func, insert, select, update

from outbox.core.model import MessageStatus
from outbox.store.sql.runner import Runner
from outbox.store.sql.upsert import upsert
from outbox.store.tables import blob_chunks, blob_refs, blobs, messages, uploads
from outbox.store.values import DeleteContent, NewMessage, Upload

UNFINISHED = (MessageStatus.QUEUED.value, MessageStatus.SENDING.value,
              MessageStatus.DEFERRED.value, MessageStatus.HELD.value)
STAGING_PREFIX = "staging/"
STALE_STAGING = timedelta(hours=6)  # no upload streams that long


# -- registration and uses --------------------------------------------------------------

def register_blob(conn: Connection, sha256: str, size: int, keep_until: datetime,
                  now: datetime) -> None:
    statement = upsert(conn, blobs).values(sha256=sha256, size=size, created_at=now,
                                            keep_until=keep_until)
    later = func.max if conn.dialect.name == "sqlite" else func.greatest
    conn.execute(statement.on_conflict_do_update(
        index_elements=[blobs.c.sha256],
        set_={"keep_until": later(blobs.c.keep_until, statement.excluded.keep_until)}))


def insert_uses(conn: Connection, message: NewMessage) -> None:
    """A new message's uses of blobs, in the transaction that inserts it."""
    if message.blobs:
        conn.execute(insert(blob_refs), [
            {"sha256": use.sha256, "message_id": message.id, "keep_until": use.keep_until}
            for use in message.blobs])


def find_blobs(conn: Connection, sha256s: Sequence[str]) -> dict[str, int]:
    if not sha256s:
        return {}
    found = conn.execute(select(blobs.c.sha256, blobs.c.size)
                         .where(blobs.c.sha256.in_(list(sha256s))))
    return {row.sha256: int(row.size) for row in found}


def live_use(now: datetime, keep_finished: timedelta) -> Any:
    """A use that keeps its blob: the message is not finished, or finished
    recently, or the use is a download link that has not expired."""
    return (messages.c.status.in_(UNFINISHED)
            | (messages.c.updated_at > now - keep_finished)
            | (blob_refs.c.keep_until.isnot(None) & (blob_refs.c.keep_until > now)))


# -- uploads --------------------------------------------------------------------------------

def create_upload(conn: Connection, upload: Upload) -> None:
    conn.execute(update(blobs).where(blobs.c.sha256 == upload.sha256,
                                     blobs.c.keep_until < upload.expires_at)
                 .values(keep_until=upload.expires_at))
    conn.execute(insert(uploads).values(
        id=upload.id, owner=upload.owner, sha256=upload.sha256, size=upload.size,
        created_at=upload.created_at, expires_at=upload.expires_at))


def find_upload(conn: Connection, owner: str, id: str, now: datetime) -> Upload | None:
    row = conn.execute(select(uploads).where(uploads.c.id == id, uploads.c.owner == owner,
                                             uploads.c.expires_at > now)).first()
    if row is None:
        return None
    return Upload(row.id, row.owner, row.sha256, int(row.size), row.created_at, row.expires_at)


# -- garbage collection ---------------------------------------------------------------------

def collect(conn: Connection, now: datetime, keep_finished: timedelta,
            delete_content: DeleteContent, limit: int) -> tuple[str, ...]:
    conn.execute(delete(uploads).where(uploads.c.expires_at <= now))
    conn.execute(delete(blob_chunks).where(blob_chunks.c.key.startswith(STAGING_PREFIX),
                                           blob_chunks.c.created_at < now - STALE_STAGING))
    in_use = exists(select(blob_refs.c.sha256).select_from(blob_refs.join(messages))
                    .where(blob_refs.c.sha256 == blobs.c.sha256,
                           live_use(now, keep_finished)))
    dead_query = (select(blobs.c.sha256).where(blobs.c.keep_until <= now, ~in_use)
                  .order_by(blobs.c.keep_until).limit(limit)
                  .with_for_update(skip_locked=True))
    dead = [str(sha) for sha in conn.execute(dead_query).scalars()]
    if not dead:
        return ()
    for table, column in ((blob_refs, blob_refs.c.sha256), (uploads, uploads.c.sha256),
                          (blob_chunks, blob_chunks.c.key), (blobs, blobs.c.sha256)):
        conn.execute(delete(table).where(column.in_(dead)))
    delete_content(dead)
    return tuple(dead)


# -- chunks held in the database ------------------------------------------------------------

def write_chunk(conn: Connection, key: str, seq: int, data: bytes, now: datetime) -> None:
    conn.execute(insert(blob_chunks).values(key=key, seq=seq, data=data, created_at=now))


def read_chunk(conn: Connection, key: str, seq: int) -> bytes | None:
    data = conn.execute(select(blob_chunks.c.data).where(blob_chunks.c.key == key,
                                                         blob_chunks.c.seq == seq)).scalar()
    return None if data is None else bytes(data)


def seal_chunks(conn: Connection, staging_key: str, sha256: str, size: int,
                keep_until: datetime, now: datetime) -> None:
    # Register first: it waits for a collector deleting this blob, so the check
    # below sees its chunks gone rather than about to go.
    register_blob(conn, sha256, size, keep_until, now)
    stored = conn.execute(select(func.count()).select_from(blob_chunks)
                          .where(blob_chunks.c.key == sha256)).scalar_one()
    if stored or size == 0:
        drop_chunks(conn, staging_key)
    else:
        conn.execute(update(blob_chunks).where(blob_chunks.c.key == staging_key)
                     .values(key=sha256))


def drop_chunks(conn: Connection, key: str) -> None:
    conn.execute(delete(blob_chunks).where(blob_chunks.c.key == key))


class SqlBlobIndex:
    """The blob index's verbs over one runner."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def register_blob(self, sha256: str, size: int, keep_until: datetime,
                            now: datetime) -> None:
        await self._run.write(register_blob, sha256, size, keep_until, now)

    async def find_blobs(self, sha256s: Sequence[str]) -> dict[str, int]:
        return await self._run.read(find_blobs, sha256s)

    async def create_upload(self, upload: Upload) -> None:
        await self._run.write(create_upload, upload)

    async def find_upload(self, owner: str, id: str, now: datetime) -> Upload | None:
        return await self._run.read(find_upload, owner, id, now)

    async def collect_blobs(self, now: datetime, keep_finished: timedelta,
                            delete_content: DeleteContent, limit: int = 500) -> tuple[str, ...]:
        return await self._run.write(collect, now, keep_finished, delete_content, limit)

    async def write_blob_chunk(self, key: str, seq: int, data: bytes, now: datetime) -> None:
        await self._run.write(write_chunk, key, seq, data, now)

    async def read_blob_chunk(self, key: str, seq: int) -> bytes | None:
        return await self._run.read(read_chunk, key, seq)

    async def seal_blob_chunks(self, staging_key: str, sha256: str, size: int,
                               keep_until: datetime, now: datetime) -> None:
        await self._run.write(seal_chunks, staging_key, sha256, size, keep_until, now)

    async def drop_blob_chunks(self, key: str) -> None:
        await self._run.write(drop_chunks, key)
