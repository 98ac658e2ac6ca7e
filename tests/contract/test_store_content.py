"""Message content in the JSON column: rows written by earlier releases load as
typed `MessageContent`, and what the store writes has the shape it always had
(`store.rows` is the only place that knows it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, select
from sqlalchemy.ext.asyncio import create_async_engine

from outbox.core.content import EmbeddedFile
from outbox.core.model import MessageStatus
from outbox.store import tables
from outbox.store.base import NewMessage, NewRecipient, Store
from outbox.store.factory import database_url
from tests.contract.support import LEASE, SHA_A, SHA_B, SHA_C, T0, TODAY_CONTENT, at

T = TypeVar("T")

# What Outbox writes since attachments live in the blob store (keys in this order).
TODAY: dict[str, Any] = {
    "from": "Shop <shop@x.test>", "to": ["Ann <ann@x.test>", "bob@x.test"],
    "cc": ["carl@x.test"], "reply_to": ["help@x.test"], "subject": "Grüße ✓",
    "text": "Hello", "html": '<p><img src="cid:logo@x"></p>',
    "headers": {"X-B": "2", "X-A": "1"}, "date": "Tue, 01 Jan 2030 12:00:00 +0000",
    "attachments": [
        {"filename": "a.txt", "content_type": "text/plain", "sha256": SHA_A, "size": 5},
        {"filename": "logo.png", "content_type": "image/png", "sha256": SHA_B, "size": 208,
         "content_id": "logo@x"},
        {"filename": "big.bin", "content_type": "application/octet-stream", "sha256": SHA_C,
         "size": 3000, "link": {"url": "http://127.0.0.1:8025/d/TOKEN",
                                "expires_at": "2030-01-08T12:00:00+00:00"}},
    ],
}
# Before the blob store: each file's bytes in the content; an old client could leave
# out content_type.
BEFORE_BLOBS: dict[str, Any] = {
    "from": "shop@x.test", "to": ["ann@x.test"], "cc": [], "reply_to": [], "subject": "old",
    "text": "see files", "html": None, "headers": {}, "date": "Tue, 01 Jan 2030 12:00:00 +0000",
    "attachments": [
        {"filename": "a.txt", "content_type": "text/plain", "content_base64": "aGVsbG8="},
        {"filename": "b.bin", "content_base64": "AAE="},
    ],
}


async def run_sql(url: str, work: Callable[[Connection], T]) -> T:
    """`work` on a connection of its own, outside the store."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed)
        try:
            with engine.begin() as conn:
                return work(conn)
        finally:
            engine.dispose()
    async_engine = create_async_engine(parsed)
    try:
        async with async_engine.begin() as aconn:
            return await aconn.run_sync(work)
    finally:
        await async_engine.dispose()


def insert_row(id: str, content: dict[str, Any], metadata: dict[str, Any],
               owner: str | None) -> Callable[[Connection], None]:
    """A queued message as an earlier release wrote it."""
    def insert(conn: Connection) -> None:
        conn.execute(tables.messages.insert().values(
            id=id, message_id=f"<{id}@x.test>", status="queued", sender="shop@x.test",
            content=content, metadata=metadata, created_at=T0, updated_at=T0, due_at=T0,
            owner=owner))
        conn.execute(tables.recipients.insert().values(
            message_id=id, position=0, address="ann@x.test", kind="to", relay="default",
            status="pending"))
    return insert


def stored_columns(id: str) -> Callable[[Connection], tuple[Any, Any, Any]]:
    def read(conn: Connection) -> tuple[Any, Any, Any]:
        m = tables.messages.c
        row = conn.execute(select(m.content, m.metadata, m.owner).where(m.id == id)).one()
        return row.content, row.metadata, row.owner
    return read


async def test_a_row_in_todays_shape_loads_typed_without_the_owner_key(
        store: Store, db_url: str) -> None:
    await run_sql(db_url, insert_row("m1", TODAY, {"_owner": "app", "ticket": 42}, "app"))

    message = (await store.messages.get("m1")).message
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)

    assert message.content == TODAY_CONTENT
    assert message.metadata == {"ticket": 42}
    assert message.owner == "app"
    assert claim.message.content == TODAY_CONTENT


async def test_a_row_from_before_the_blob_store_loads(store: Store, db_url: str) -> None:
    await run_sql(db_url, insert_row("m1", BEFORE_BLOBS, {"_owner": "app"}, None))

    message = (await store.messages.get("m1")).message

    assert message.content.attachments == (
        EmbeddedFile("a.txt", "text/plain", "aGVsbG8="), EmbeddedFile("b.bin", "", "AAE="))
    assert (message.content.html, message.content.cc) == (None, ())
    assert (message.owner, message.metadata) == ("app", {})


async def test_the_store_writes_the_same_shape(store: Store, db_url: str) -> None:
    new = NewMessage(id="m1", message_id="<m1@x.test>", sender="shop@x.test",
                     recipients=[NewRecipient("ann@x.test", "to", "default")],
                     content=TODAY_CONTENT, accepted_at=T0, owner="app",
                     metadata={"ticket": 42})
    created, _ = await store.messages.enqueue(new)

    content, metadata, owner = await run_sql(db_url, stored_columns("m1"))

    assert json.dumps(content) == json.dumps(TODAY)  # same keys, same order
    assert (metadata, owner) == ({"ticket": 42}, "app")
    assert created.status is MessageStatus.QUEUED and created.owner == "app"
    assert (await store.messages.get("m1")).message == created
