"""The blob index on both backends: registration, uploads, uses (what keeps a blob
alive, seen through garbage collection), chunks held in the database; and the
shared signing key."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import pytest

from outbox.core.model import MessageStatus
from outbox.errors import Conflict, StorageError
from outbox.store.base import BlobUse, Store, Upload
from tests.contract.conftest import OpenStore
from tests.contract.support import LEASE, at, finished, new_message

A = "a" * 64
B = "b" * 64
C = "c" * 64
NOTHING = timedelta(0)


class Deleted:
    """A `delete_content` that remembers what it was asked to delete."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, sha256s: Sequence[str]) -> None:
        self.calls.append(sorted(sha256s))

    @property
    def all(self) -> list[str]:
        return sorted(sha for call in self.calls for sha in call)


async def enqueue_using(store: Store, *uses: BlobUse) -> str:
    message = replace(new_message(), blobs=list(uses))
    created, _ = await store.messages.enqueue(message)
    return created.id


async def finish(store: Store, status: MessageStatus, seconds: float) -> None:
    """Claim the due message and record it finished at T0 + seconds."""
    (claim,) = await store.messages.claim_due("w", at(0), at(0) + LEASE, 1)
    assert await store.messages.record_attempts([finished(claim, status, finished_at=at(seconds))])


# --- registration ---------------------------------------------------------------------------

async def test_a_registered_blob_is_found_with_its_size(store: Store) -> None:
    await store.blob_index.register_blob(A, 1234, at(60), at(0))
    await store.blob_index.register_blob(A, 1234, at(30), at(1))  # again: idempotent
    assert await store.blob_index.find_blobs([A, B]) == {A: 1234}
    assert await store.blob_index.find_blobs([]) == {}


async def test_registering_again_only_extends_how_long_it_is_kept(store: Store) -> None:
    await store.blob_index.register_blob(A, 1, at(100), at(0))
    await store.blob_index.register_blob(A, 1, at(10), at(1))
    deleted = Deleted()
    assert await store.blob_index.collect_blobs(at(50), NOTHING, deleted) == ()
    assert await store.blob_index.collect_blobs(at(100), NOTHING, deleted) == (A,)
    assert deleted.calls == [[A]]
    assert await store.blob_index.find_blobs([A]) == {}


# --- uploads --------------------------------------------------------------------------------

def upload(id: str = "up_1", owner: str = "app", sha256: str = A, expires: float = 3600) -> Upload:
    return Upload(id, owner, sha256, 5, at(0), at(expires))


async def test_an_upload_is_found_by_its_owner_until_it_expires(store: Store) -> None:
    await store.blob_index.register_blob(A, 5, at(10), at(0))
    await store.blob_index.create_upload(upload())
    found = await store.blob_index.find_upload("app", "up_1", at(1))
    assert found == upload()
    assert await store.blob_index.find_upload("other-key", "up_1", at(1)) is None
    assert await store.blob_index.find_upload("app", "up_2", at(1)) is None
    assert await store.blob_index.find_upload("app", "up_1", at(3600)) is None


async def test_an_upload_keeps_its_blob_until_it_expires_then_both_go(store: Store) -> None:
    await store.blob_index.register_blob(A, 5, at(10), at(0))
    await store.blob_index.create_upload(upload(expires=3600))
    deleted = Deleted()
    assert await store.blob_index.collect_blobs(at(600), NOTHING, deleted) == ()
    assert await store.blob_index.collect_blobs(at(3600), NOTHING, deleted) == (A,)
    assert await store.blob_index.find_upload("app", "up_1", at(0)) is None


async def test_an_upload_of_unknown_content_is_refused(store: Store) -> None:
    with pytest.raises(Conflict):
        await store.blob_index.create_upload(upload(sha256=C))


# --- uses: what keeps a blob ---------------------------------------------------------------

async def test_a_message_that_is_not_finished_keeps_its_blobs(store: Store) -> None:
    await store.blob_index.register_blob(A, 5, at(0), at(0))
    await store.blob_index.register_blob(B, 5, at(0), at(0))
    await enqueue_using(store, BlobUse(A), BlobUse(B))
    deleted = Deleted()
    assert await store.blob_index.collect_blobs(at(10), NOTHING, deleted) == ()
    assert await store.blob_index.find_blobs([A, B]) == {A: 5, B: 5}

    await finish(store, MessageStatus.SENT, seconds=20)
    assert sorted(await store.blob_index.collect_blobs(at(30), NOTHING, deleted)) == [A, B]
    assert deleted.all == [A, B]
    assert await store.blob_index.find_blobs([A, B]) == {}


@pytest.mark.parametrize("status", [MessageStatus.DEFERRED, MessageStatus.HELD])
async def test_deferred_and_held_messages_keep_their_blobs(store: Store,
                                                           status: MessageStatus) -> None:
    await store.blob_index.register_blob(A, 5, at(0), at(0))
    await enqueue_using(store, BlobUse(A))
    await finish(store, status, seconds=20)
    assert await store.blob_index.collect_blobs(at(999_999), NOTHING, Deleted()) == ()
    assert await store.blob_index.find_blobs([A]) == {A: 5}


async def test_a_finished_message_keeps_its_blobs_for_keep_finished(store: Store) -> None:
    await store.blob_index.register_blob(A, 5, at(0), at(0))
    await enqueue_using(store, BlobUse(A))
    await finish(store, MessageStatus.FAILED, seconds=100)
    hour = timedelta(hours=1)
    assert await store.blob_index.collect_blobs(at(100 + 3599), hour, Deleted()) == ()
    assert await store.blob_index.collect_blobs(at(100 + 3600), hour, Deleted()) == (A,)


async def test_a_download_link_keeps_its_blob_until_it_expires(store: Store) -> None:
    await store.blob_index.register_blob(A, 5, at(0), at(0))
    await enqueue_using(store, BlobUse(A, keep_until=at(7200)))
    await finish(store, MessageStatus.SENT, seconds=10)
    assert await store.blob_index.collect_blobs(at(7199), NOTHING, Deleted()) == ()
    assert await store.blob_index.collect_blobs(at(7200), NOTHING, Deleted()) == (A,)


async def test_each_use_counts(store: Store) -> None:
    await store.blob_index.register_blob(A, 5, at(0), at(0))
    await store.blob_index.register_blob(B, 5, at(0), at(0))
    for _ in range(3):
        await enqueue_using(store, BlobUse(A))
    collected = await store.blob_index.collect_blobs(at(1), NOTHING, Deleted())
    assert collected == (B,), "the uses of A keep only A"
    for seconds in (10, 20):
        await finish(store, MessageStatus.SENT, seconds)
        collected = await store.blob_index.collect_blobs(at(30), NOTHING, Deleted())
        assert collected == (), "a use is left"
    await finish(store, MessageStatus.SENT, seconds=40)
    assert await store.blob_index.collect_blobs(at(50), NOTHING, Deleted()) == (A,)


async def test_a_message_cannot_use_a_blob_that_is_not_registered(store: Store) -> None:
    with pytest.raises(Conflict):
        await enqueue_using(store, BlobUse(C))
    assert (await store.messages.stats()).by_status.get("queued", 0) == 0


async def test_collection_is_limited_and_deletes_each_blob_once(
        open_stores: OpenStore) -> None:
    first, second = await open_stores(), await open_stores()
    shas = [f"{n:064x}" for n in range(12)]
    for sha in shas:
        await first.blob_index.register_blob(sha, 1, at(0), at(0))
    deleted = Deleted()
    assert len(await first.blob_index.collect_blobs(at(1), NOTHING, deleted, limit=5)) == 5
    results = await asyncio.gather(*(store.blob_index.collect_blobs(at(1), NOTHING, deleted)
                                     for store in (first, second)))
    assert sorted(sha for result in results for sha in result) == sorted(deleted.all[5:])
    assert deleted.all == shas  # every one, each once
    assert await first.blob_index.find_blobs(shas) == {}


async def test_content_deletion_failing_keeps_the_rows(store: Store) -> None:
    await store.blob_index.register_blob(A, 5, at(0), at(0))

    def refuse(sha256s: Sequence[str]) -> None:
        raise OSError("disk on fire")

    with pytest.raises(StorageError, match="disk on fire"):
        await store.blob_index.collect_blobs(at(1), NOTHING, refuse)
    assert await store.blob_index.find_blobs([A]) == {A: 5}


# --- chunks in the database -----------------------------------------------------------------

async def write_staged(store: Store, key: str, chunks: Sequence[bytes]) -> None:
    for seq, data in enumerate(chunks):
        await store.blob_index.write_blob_chunk(key, seq, data, at(0))


async def test_sealed_chunks_are_read_back_in_order(store: Store) -> None:
    chunks = [bytes([n]) * 1000 for n in range(3)] + [b"\x00\xff tail"]
    await write_staged(store, "staging/1", chunks)
    await store.blob_index.seal_blob_chunks("staging/1", A, 3008, at(60), at(1))
    assert [await store.blob_index.read_blob_chunk(A, seq) for seq in range(5)] == [*chunks, None]
    assert await store.blob_index.read_blob_chunk("staging/1", 0) is None
    assert await store.blob_index.find_blobs([A]) == {A: 3008}


async def test_sealing_content_already_stored_drops_the_new_copy(store: Store) -> None:
    await write_staged(store, "staging/1", [b"one"])
    await store.blob_index.seal_blob_chunks("staging/1", A, 3, at(60), at(1))
    await write_staged(store, "staging/2", [b"one"])
    await store.blob_index.seal_blob_chunks("staging/2", A, 3, at(120), at(2))
    assert await store.blob_index.read_blob_chunk("staging/2", 0) is None
    chunks = [await store.blob_index.read_blob_chunk(A, seq) for seq in (0, 1)]
    assert chunks == [b"one", None]
    kept_to_120 = await store.blob_index.collect_blobs(at(100), NOTHING, Deleted())
    assert kept_to_120 == ()


async def test_dropped_and_collected_chunks_are_gone(store: Store) -> None:
    await write_staged(store, "staging/abandoned", [b"x", b"y"])
    await store.blob_index.drop_blob_chunks("staging/abandoned")
    assert await store.blob_index.read_blob_chunk("staging/abandoned", 0) is None

    await write_staged(store, "staging/1", [b"data"])
    await store.blob_index.seal_blob_chunks("staging/1", A, 4, at(10), at(0))
    await store.blob_index.collect_blobs(at(10), NOTHING, Deleted())
    assert await store.blob_index.read_blob_chunk(A, 0) is None


async def test_stale_partial_uploads_are_collected(store: Store) -> None:
    await write_staged(store, "staging/crashed", [b"x"])  # written at T0, never sealed
    await store.blob_index.collect_blobs(at(3600), NOTHING, Deleted())
    may_still_stream = await store.blob_index.read_blob_chunk("staging/crashed", 0)
    assert may_still_stream == b"x"
    await store.blob_index.collect_blobs(at(6 * 3600 + 1), NOTHING, Deleted())
    assert await store.blob_index.read_blob_chunk("staging/crashed", 0) is None


async def test_an_empty_blob_has_no_chunks(store: Store) -> None:
    await store.blob_index.seal_blob_chunks("staging/empty", A, 0, at(10), at(0))
    assert await store.blob_index.find_blobs([A]) == {A: 0}
    assert await store.blob_index.read_blob_chunk(A, 0) is None


# --- signing keys ---------------------------------------------------------------------------

async def test_the_first_signing_key_stored_is_everyones(open_stores: OpenStore) -> None:
    first, second = await open_stores(), await open_stores()
    keys = await asyncio.gather(first.keys.signing_key("links", b"k1" * 16, at(0)),
                                second.keys.signing_key("links", b"k2" * 16, at(0)))
    assert keys[0] == keys[1]
    assert keys[0] in (b"k1" * 16, b"k2" * 16)
    assert await first.keys.signing_key("links", b"k3" * 16, at(5)) == keys[0]
    assert await first.keys.signing_key("other", b"k4" * 16, at(5)) == b"k4" * 16
