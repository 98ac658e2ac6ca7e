"""Domain values to column values and back; no SQL here (that is `sql.py`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeAlias

from sqlalchemy import Row

from outbox.core.model import Event, EventType, MessageStatus, RecipientStatus, RecipientUpdate
from outbox.store.base import Attempt, AttemptRecord, Message, NewMessage, Recipient

UNCERTAIN_HOLD = "delivery uncertain: the worker stopped during the attempt"
ACCEPTED_STATUSES = (MessageStatus.QUEUED, MessageStatus.HELD)
WAITING_STATUSES = (MessageStatus.QUEUED, MessageStatus.DEFERRED)

AnyRow: TypeAlias = Row[*tuple[Any, ...]]


def owner_of(message: NewMessage) -> str | None:
    """The submitter: the idempotency claim's owner, else metadata `_owner`."""
    if message.idempotency is not None:
        return message.idempotency.owner
    owner = message.metadata.get("_owner")
    return str(owner) if owner is not None else None


def check_new(message: NewMessage) -> None:
    """Refuse a programming error before it reaches the database."""
    if message.status not in ACCEPTED_STATUSES:
        raise ValueError(f"a new message is queued or held, not {message.status}")
    if message.accepted_at.tzinfo is None:
        raise ValueError("accepted_at must be a timezone-aware datetime")


def message_values(message: NewMessage) -> dict[str, Any]:
    at = message.accepted_at
    queued = message.status is MessageStatus.QUEUED
    claim = message.idempotency
    return {
        "id": message.id, "message_id": message.message_id, "status": message.status.value,
        "sender": message.sender, "content": message.content, "metadata": message.metadata,
        "attempts": 0, "created_at": at, "updated_at": at, "due_at": at if queued else None,
        "held_since": None if queued else at, "held_seconds": 0.0,
        "hold_reason": message.hold_reason, "resent_from": message.resent_from,
        "owner": owner_of(message), "idempotency_key": claim.key if claim else None,
        "request_hash": claim.request_hash if claim else None,
    }


def recipient_values(message: NewMessage) -> list[dict[str, Any]]:
    return [{"message_id": message.id, "position": position, "address": r.address,
             "kind": r.kind, "relay": r.relay, "status": RecipientStatus.PENDING.value,
             "provenance": r.provenance}
            for position, r in enumerate(message.recipients)]


def accepted_message(message: NewMessage) -> Message:
    """What `get` would return right after `enqueue`, without reading it back."""
    at = message.accepted_at.astimezone(UTC)
    return Message(
        id=message.id, message_id=message.message_id, status=message.status,
        sender=message.sender, content=message.content, metadata=message.metadata, attempts=0,
        created_at=at, updated_at=at,
        due_at=at if message.status is MessageStatus.QUEUED else None, held_seconds=0.0,
        hold_reason=message.hold_reason, resent_from=message.resent_from,
        recipients=tuple(Recipient(r.address, r.kind, r.relay, RecipientStatus.PENDING,
                                   r.provenance) for r in message.recipients),
    )


def accepted_event(message: NewMessage) -> Event:
    if message.status is MessageStatus.HELD:
        return Event(message.accepted_at, EventType.HELD, detail=message.hold_reason,
                     guidance=message.hold_guidance)
    return Event(message.accepted_at, EventType.QUEUED)


def uncertain_event(now: datetime, attempt: int, hold: bool) -> Event:
    then = ("held until an operator retries it" if hold
            else "it will be sent again with the same Message-ID")
    return Event(now, EventType.UNCERTAIN, attempt,
                 detail=f"the worker's lease expired during the attempt, so the relay may "
                        f"already have the message; {then}")


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


def release_params(row: AnyRow, now: datetime) -> dict[str, Any]:
    return {"b_id": row.id, "b_now": now, "b_held_seconds": held_seconds_after(row, now)}


def finish_params(record: AttemptRecord) -> dict[str, Any]:
    """The message's columns after an attempt whose claim still holds."""
    waiting = record.status in WAITING_STATUSES
    held = record.status is MessageStatus.HELD
    return {
        "b_id": record.message_id, "b_token": record.token, "b_status": record.status.value,
        "b_due_at": (record.due_at or record.finished_at) if waiting else None,
        "b_inc": 1 if record.count_attempt else 0, "b_at": record.finished_at,
        "b_held_since": record.finished_at if held else None,
        "b_hold_reason": record.hold_reason if held else "",
        "b_relay": (record.relay or None) if held and record.held_for_relay else None,
    }


def attempt_values(record: AttemptRecord) -> dict[str, Any]:
    return {"message_id": record.message_id, "number": record.number, "relay": record.relay,
            "started_at": record.started_at, "finished_at": record.finished_at,
            "outcome": record.outcome, "transcript": record.transcript}


def recipient_params(message_id: str, update: RecipientUpdate) -> dict[str, Any]:
    return {"b_message": message_id, "b_address": update.address,
            "b_status": update.status.value, "b_reply_code": update.reply_code,
            "b_enhanced_code": update.enhanced_code, "b_reply": update.reply,
            "b_guidance": update.guidance}


def to_recipient(row: AnyRow) -> Recipient:
    return Recipient(address=row.address, kind=row.kind, relay=row.relay,
                     status=RecipientStatus(row.status), provenance=row.provenance,
                     reply_code=row.reply_code, enhanced_code=row.enhanced_code,
                     reply=row.reply, guidance=row.guidance)


def group_recipients(found: Iterable[AnyRow]) -> dict[str, tuple[Recipient, ...]]:
    grouped: dict[str, list[Recipient]] = {}
    for row in found:
        grouped.setdefault(row.message_id, []).append(to_recipient(row))
    return {id: tuple(recipients) for id, recipients in grouped.items()}


def to_message(row: AnyRow, recipients: tuple[Recipient, ...]) -> Message:
    values = row._mapping
    return Message(
        id=values["id"], message_id=values["message_id"],
        status=MessageStatus(values["status"]), sender=values["sender"],
        content=values["content"], metadata=values["metadata"], attempts=values["attempts"],
        created_at=values["created_at"], updated_at=values["updated_at"],
        due_at=values["due_at"], held_seconds=float(values["held_seconds"]),
        hold_reason=values["hold_reason"], resent_from=values["resent_from"],
        recipients=recipients,
    )


def to_event(row: AnyRow) -> Event:
    return Event(at=row.at, type=EventType(row.type), attempt=row.attempt,
                 recipient=row.recipient, reply_code=row.reply_code,
                 enhanced_code=row.enhanced_code, reply=row.reply, guidance=row.guidance,
                 detail=row.detail)


def to_attempt(row: AnyRow) -> Attempt:
    return Attempt(number=row.number, started_at=row.started_at, finished_at=row.finished_at,
                   relay=row.relay, outcome=row.outcome, transcript=row.transcript)
