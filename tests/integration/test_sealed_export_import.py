"""Signed mail through `outbox export` and `outbox import` (service/transfer.py): the
exported .eml is the wire form, its S/MIME signature good (openssl), and importing it
queues a message whose sealed body is the same bytes. A real store on both backends and
a real blob store; no delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.pg import database
from tests.smime import smime_signed, verified

from outbox.config import Settings
from outbox.core.inbound import Envelope, read_message
from outbox.core.model import MessageStatus
from outbox.service import Outbox
from outbox.service.transfer import export_messages, import_messages

RELAY = {"name": "default", "host": "127.0.0.1", "port": 2525, "security": "none"}
PART = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nInvoice 42, signed.\r\n"


def settings(url: str, directory: Path) -> Settings:
    return Settings(database={"url": url}, relays=[RELAY],
                    storage={"blob_dir": str(directory / "blobs")})


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_signed_mail_is_exported_as_it_goes_out_and_imported_sealed(
        backend: str, tmp_path: Path) -> None:
    raw, certificate = smime_signed("<signed-42@client.example.test>", PART, tmp_path)
    exported = tmp_path / "exported"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with database(backend, tmp_path / "a") as url:
        source = await Outbox.open(settings(url, tmp_path / "a"))
        try:
            submitted = await source.messages.submit(read_message(
                raw, Envelope("shop@example.test", ("ann@example.test",))), owner="app")
            sealed = submitted.message.content.sealed_body
            count = await export_messages(source, MessageStatus.QUEUED, None, exported,
                                          lambda detail: {"status": detail.message.status.value})
        finally:
            await source.close()
    assert count == 1 and sealed is not None
    eml = exported / f"{submitted.message.id}.eml"
    assert verified(eml.read_bytes(), certificate, tmp_path)
    with database(backend, tmp_path / "b") as url:
        target = await Outbox.open(settings(url, tmp_path / "b"))
        try:
            imported = await import_messages(target, exported)
            (new,) = imported.queued
            found: Any = (await target.messages.get(new)).message.content.sealed_body
        finally:
            await target.close()
    assert imported.refused == () and (found.sha256, found.size) == (sealed.sha256, sealed.size)
