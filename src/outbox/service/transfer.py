"""`outbox export` and `outbox import`: messages as files, and back into the queue.

Export writes, per message, `<id>.eml` (the wire form, streamed by the same MIME
writer that delivery uses, attachments included; Bcc is never a header) and
`<id>.json` (what the API shows of it: status, recipients with their results,
events; plus its envelope, owner and metadata). Import reads each pair back and
submits the message through `Messages.submit`, the path every entry point takes,
so it is validated, routed and queued like new mail; a message whose Message-ID
its owner already has is not queued again (idempotent by Message-ID).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from outbox.core.inbound import Envelope, read_message
from outbox.core.model import MessageStatus
from outbox.delivery.mime_writer import MimeWriter
from outbox.errors import InputError
from outbox.service.outbox import Outbox
from outbox.store.values import MessageDetail, MessageFilter

PAGE = 200
CONCURRENT = 50  # messages imported at once (one group commit on SQLite)
Sidecar = Callable[[MessageDetail], dict[str, Any]]  # the API's JSON of a message


@dataclass(frozen=True, slots=True)
class Imported:
    queued: tuple[str, ...]  # new message ids
    known: tuple[str, ...]  # Message-IDs already queued before
    refused: tuple[tuple[str, str], ...]  # (file, why)


async def export_messages(outbox: Outbox, status: MessageStatus, since: datetime | None,
                          directory: Path, sidecar: Sidecar) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    writer = MimeWriter(outbox.blobs)
    count = 0
    async for detail in _details(outbox, status, since):
        message = detail.message
        body = writer.body_for(message.content, message.message_id)
        eml = directory / f"{message.id}.eml"
        with open(eml.with_suffix(".eml.partial"), "wb") as out:
            async for chunk in body.chunks():
                out.write(chunk)
        eml.with_suffix(".eml.partial").replace(eml)
        described = {**sidecar(detail), "owner": message.owner, "envelope": {
            "from": message.sender,
            "to": [r.address for r in message.recipients]}, "metadata": _public(message.metadata)}
        (directory / f"{message.id}.json").write_text(json.dumps(described, indent=1))
        count += 1
    return count


async def raw_message(outbox: Outbox, id: str) -> tuple[str, AsyncIterator[bytes]]:
    """Message `id` as an .eml, as export writes it (Bcc is never a header): its
    Message-ID and the bytes, streamed; `NotFound` for an unknown id."""
    message = (await outbox.messages.get(id)).message
    body = MimeWriter(outbox.blobs).body_for(message.content, message.message_id)
    return message.message_id, body.chunks()


def _public(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata the API shows (keys starting with "_" are Outbox's own)."""
    return {key: value for key, value in metadata.items() if not str(key).startswith("_")}


async def _details(outbox: Outbox, status: MessageStatus,
                   since: datetime | None) -> AsyncIterator[MessageDetail]:
    cursor: str | None = None
    where = MessageFilter(since=since)
    while True:
        page = await outbox.messages.list(status, PAGE, cursor, where)
        for message in page.messages:
            yield await outbox.messages.get(message.id)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def import_messages(outbox: Outbox, directory: Path) -> Imported:
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory", field="dir",
                         hint="name the directory `outbox export -o` wrote")
    queued: list[str] = []
    known: list[str] = []
    refused: list[tuple[str, str]] = []
    files = sorted(directory.glob("*.eml"))
    for start in range(0, len(files), CONCURRENT):  # together: they share commits
        group = files[start:start + CONCURRENT]
        results = await asyncio.gather(*(_import_or_refuse(outbox, eml) for eml in group))
        for eml, (new, message_id, why) in zip(group, results, strict=True):
            if why is not None:
                refused.append((eml.name, why))
            elif new is not None:
                queued.append(new)
            else:
                known.append(message_id)
    return Imported(tuple(queued), tuple(known), tuple(refused))


async def _import_or_refuse(outbox: Outbox, eml: Path) -> tuple[str | None, str, str | None]:
    try:
        new, message_id = await _import_one(outbox, eml)
    except InputError as exc:  # this message's content; a database error stops it all
        return None, "", exc.one_line()
    return new, message_id, None


async def _import_one(outbox: Outbox, eml: Path) -> tuple[str | None, str]:
    """(the new message's id, or None when its Message-ID is queued already; the
    Message-ID)."""
    described = _sidecar_of(eml)
    envelope = described.get("envelope") or {}
    owner = str(described.get("owner") or "cli")
    submission = read_message(eml.read_bytes(), Envelope(str(envelope.get("from", "")),
                                                         tuple(envelope.get("to", ()))))
    submission = dataclasses.replace(submission,
                                     metadata=_public(described.get("metadata") or {}))
    message_id = submission.headers.get("Message-ID", "")
    if message_id and await outbox.store.messages.find_by_message_id(owner, message_id):
        return None, message_id
    submitted = await outbox.messages.submit(submission, owner=owner)
    if submitted.replayed:
        return None, message_id
    return submitted.message.id, message_id


def _sidecar_of(eml: Path) -> dict[str, Any]:
    path = eml.with_suffix(".json")
    if not path.is_file():
        raise InputError(f"{path.name} is missing beside {eml.name}", field="dir",
                         hint="export writes both; copy the .json with its .eml")
    try:
        found = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path.name} is not JSON ({exc})", field="dir") from None
    if not isinstance(found, dict):
        raise InputError(f"{path.name} is not a JSON object", field="dir")
    return found
