"""Domain values (`store.values`) to column values and back; no SQL here (that is in `sql/`).

A message's content (`core.content.MessageContent`) is a JSON column; this is
the only place that knows its shape, which is the one Outbox has always
written (no version key):

    {"from": "Shop <shop@x.org>", "to": [...], "cc": [...], "reply_to": [...],
     "subject": "...", "text": "..." | null, "html": "..." | null,
     "headers": {"X-Name": "value", ...}, "date": "Tue, 01 Dec 2026 10:00:00 +0000",
     "attachments": [
        {"filename", "content_type", "sha256", "size"},             a file in the blob store
        {..., "content_id": "logo@x"},                               an inline image
        {..., "link": {"url": "...", "expires_at": "<ISO 8601>"}},   sent as a download link
        {..., "sealed": true},                                       the body of signed or
                                                                     encrypted mail, as it came
        {"filename", "content_type", "content_base64"}]}             the bytes themselves (mail
                                                                     accepted before blobs)

Missing keys read as their defaults. The owner is the `owner` column; rows
written before it was a field also carry it as metadata `_owner`, which is
dropped on load.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

from sqlalchemy import Row, RowMapping

from outbox.core.content import Attachment, AttachmentRef, EmbeddedFile, LinkRef, MessageContent
from outbox.core.model import Event, EventType, MessageStatus, RecipientStatus, RecipientUpdate
from outbox.store.values import (
    Attempt,
    AttemptRecord,
    ClaimInfo,
    Message,
    NewMessage,
    Recipient,
)

WAITING_STATUSES = (MessageStatus.QUEUED, MessageStatus.DEFERRED)

AnyRow: TypeAlias = Row[*tuple[Any, ...]]


LEGACY_OWNER_KEY = "_owner"  # the owner in metadata, in rows written before it was a field


def owner_of(message: NewMessage) -> str | None:
    """The submitter: the idempotency claim's owner, else the message's."""
    if message.idempotency is not None:
        return message.idempotency.owner
    return message.owner


def check_new(message: NewMessage) -> None:
    """Refuse a programming error before it reaches the database."""
    if message.accepted_at.tzinfo is None:
        raise ValueError("accepted_at must be a timezone-aware datetime")


def accepted_message(message: NewMessage) -> Message:
    """What `get` would return right after `enqueue`, without reading it back."""
    at = message.accepted_at.astimezone(UTC)
    return Message(
        id=message.id, message_id=message.message_id, status=message.status,
        sender=message.sender, content=message.content, metadata=message.metadata, attempts=0,
        created_at=at, updated_at=at,
        due_at=at if message.status is MessageStatus.QUEUED else None, held_seconds=0.0,
        hold_reason=message.hold.reason if message.hold else "",
        resent_from=message.resent_from,
        recipients=tuple(Recipient(r.address, r.kind, r.relay, RecipientStatus.PENDING,
                                   r.provenance) for r in message.recipients),
        owner=owner_of(message),
    )


def accepted_event(message: NewMessage) -> Event:
    if message.hold is not None:
        return Event(message.accepted_at, EventType.HELD, detail=message.hold.reason,
                     guidance=message.hold.guidance)
    return Event(message.accepted_at, EventType.QUEUED)


def retry_event(status: str, now: datetime) -> Event:
    if status == MessageStatus.HELD.value:
        return Event(now, EventType.RELEASED, detail="released by an operator")
    return Event(now, EventType.QUEUED, detail=f"retry requested (was {status})")


def event_values(message_id: str, event: Event) -> dict[str, Any]:
    return {"message_id": message_id, "at": event.at, "type": event.type.value,
            "attempt": event.attempt, "recipient": event.recipient,
            "reply_code": event.reply_code, "enhanced_code": event.enhanced_code,
            "reply": event.reply, "guidance": event.guidance, "detail": event.detail}


def held_seconds_after(row: AnyRow, now: datetime) -> float:
    """Total time held, once the message leaves `held` at `now`."""
    if row.held_since is None:
        return float(row.held_seconds)
    return float(row.held_seconds) + max((now - row.held_since).total_seconds(), 0.0)


def leave_hold(row: AnyRow, now: datetime) -> dict[str, Any]:
    """Column values for a message leaving `held` (none if it was not held)."""
    if row.status != MessageStatus.HELD.value:
        return {}
    return {"held_seconds": held_seconds_after(row, now), "held_since": None,
            "hold_reason": "", "held_for_relay": None}


def finish_row(record: AttemptRecord) -> tuple[Any, ...]:
    """The message's columns after an attempt whose claim still holds, in the order of
    sql/outcome_rows.py's statement: status, due_at, the attempts to add, updated_at,
    held_since, hold_reason, held_for_relay; then the id and claim token it matches."""
    waiting = record.status in WAITING_STATUSES
    held = record.status is MessageStatus.HELD
    return (record.status.value,
            (record.due_at or record.finished_at) if waiting else None,
            1 if record.count_attempt else 0, record.finished_at,
            record.finished_at if held else None,
            record.hold_reason if held else "",
            (record.hold_relay or record.relay or None) if held and record.held_for_relay
            else None,
            record.message_id, record.token)


def recipient_params(message_id: str, update: RecipientUpdate) -> dict[str, Any]:
    return {"b_message": message_id, "b_address": update.address,
            "b_status": update.status.value, "b_reply_code": update.reply_code,
            "b_enhanced_code": update.enhanced_code, "b_reply": update.reply,
            "b_guidance": update.guidance}


# The columns `group_recipients` reads, in order: the message's id, then Recipient's fields.
RECIPIENT_COLUMNS = ("message_id", "address", "kind", "relay", "status", "provenance",
                     "reply_code", "enhanced_code", "reply", "guidance")
_RECIPIENT_STATUS = {status.value: status for status in RecipientStatus}


def group_recipients(found: Iterable[Sequence[Any]]) -> dict[str, tuple[Recipient, ...]]:
    """Rows of RECIPIENT_COLUMNS, by message. Unpacked by position: a claim hydrates a
    1,000-recipient message on SQLite's one writer thread, and reading each row's
    fields by name cost several times the query."""
    grouped: dict[str, list[Recipient]] = {}
    for (message_id, address, kind, relay, status, provenance, reply_code, enhanced_code,
         reply, guidance) in found:
        grouped.setdefault(message_id, []).append(Recipient(
            address, kind, relay, _RECIPIENT_STATUS[status], provenance, reply_code,
            enhanced_code, reply, guidance))
    return {id: tuple(recipients) for id, recipients in grouped.items()}


def to_message(values: RowMapping | Mapping[str, Any],
               recipients: tuple[Recipient, ...]) -> Message:
    """`values`: a messages row's `_mapping`, or its column values by name."""
    return Message(
        id=values["id"], message_id=values["message_id"],
        status=MessageStatus(values["status"]), sender=values["sender"],
        content=to_content(values["content"]),
        metadata={k: v for k, v in values["metadata"].items() if k != LEGACY_OWNER_KEY},
        attempts=values["attempts"],
        created_at=values["created_at"], updated_at=values["updated_at"],
        due_at=values["due_at"], held_seconds=float(values["held_seconds"]),
        hold_reason=values["hold_reason"], resent_from=values["resent_from"],
        recipients=recipients,
        owner=values["owner"] if values["owner"] is not None else _legacy_owner(values["metadata"]),
        claim=_claim_info(values),
    )


def _legacy_owner(metadata: Mapping[str, Any]) -> str | None:
    owner = metadata.get(LEGACY_OWNER_KEY)
    return str(owner) if owner is not None else None


def _claim_info(values: Any) -> ClaimInfo | None:
    if values["status"] != MessageStatus.SENDING.value or not values["claimed_by"]:
        return None
    return ClaimInfo(values["claimed_by"], values["updated_at"], values["lease_until"])


def to_event(row: AnyRow) -> Event:
    return Event(at=row.at, type=EventType(row.type), attempt=row.attempt,
                 recipient=row.recipient, reply_code=row.reply_code,
                 enhanced_code=row.enhanced_code, reply=row.reply, guidance=row.guidance,
                 detail=row.detail)


def to_attempt(row: AnyRow) -> Attempt:
    return Attempt(number=row.number, started_at=row.started_at, finished_at=row.finished_at,
                   relay=row.relay, outcome=row.outcome, transcript=row.transcript)


# --- content <-> the JSON column ------------------------------------------------------------

def content_json(content: MessageContent) -> dict[str, Any]:
    return {
        "from": content.from_, "to": list(content.to), "cc": list(content.cc),
        "reply_to": list(content.reply_to), "subject": content.subject, "text": content.text,
        "html": content.html, "headers": dict(content.headers), "date": content.date,
        "attachments": [_attachment_json(a) for a in content.attachments],
    }


def _attachment_json(attachment: Attachment) -> dict[str, Any]:
    if isinstance(attachment, EmbeddedFile):
        return {"filename": attachment.filename, "content_type": attachment.content_type,
                "content_base64": attachment.content_base64}
    entry: dict[str, Any] = {"filename": attachment.filename,
                             "content_type": attachment.content_type,
                             "sha256": attachment.sha256, "size": attachment.size}
    if attachment.content_id is not None:
        entry["content_id"] = attachment.content_id
    if attachment.link is not None:
        entry["link"] = {"url": attachment.link.url,
                         "expires_at": attachment.link.expires_at.isoformat()}
    if attachment.sealed:
        entry["sealed"] = True
    return entry


def to_content(stored: Mapping[str, Any]) -> MessageContent:
    return MessageContent(
        from_=stored.get("from") or "", date=stored.get("date") or "",
        to=tuple(stored.get("to") or ()), cc=tuple(stored.get("cc") or ()),
        reply_to=tuple(stored.get("reply_to") or ()), subject=stored.get("subject") or "",
        text=stored.get("text"), html=stored.get("html"),
        headers=tuple((stored.get("headers") or {}).items()),
        attachments=tuple(_to_attachment(a) for a in stored.get("attachments") or ()),
    )


def _to_attachment(stored: Mapping[str, Any]) -> Attachment:
    filename, content_type = str(stored["filename"]), stored.get("content_type") or ""
    if "sha256" not in stored:
        return EmbeddedFile(filename, content_type, str(stored.get("content_base64") or ""))
    link = stored.get("link")
    return AttachmentRef(
        filename, content_type, str(stored["sha256"]), int(stored["size"]),
        content_id=stored.get("content_id"),
        link=LinkRef(link["url"], datetime.fromisoformat(link["expires_at"])) if link else None,
        sealed=bool(stored.get("sealed")))
