"""Domain values → API bodies, with guidance rendered in plain words."""

from __future__ import annotations

from datetime import datetime

from outbox.api.schemas import AttemptOut, EventOut, GuidanceOut, MessageOut, RecipientOut
from outbox.core import guidance as catalogue
from outbox.core.model import Reply
from outbox.store.base import Attempt, Event, Message, MessageDetail, Recipient


def iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def render_guidance(key: str | None, code: int | None, enhanced: str | None,
                    text: str | None) -> catalogue.Guidance | None:
    if not key:
        return None
    reply = Reply(code, enhanced, text or "") if code else None
    return catalogue.describe(key, reply)


def recipient_view(r: Recipient) -> RecipientOut:
    g = render_guidance(r.guidance, r.reply_code, r.enhanced_code, r.reply)
    return RecipientOut(address=r.address, kind=r.kind, relay=r.relay, status=r.status.value,
                        reply_code=r.reply_code, enhanced_code=r.enhanced_code, reply=r.reply,
                        guidance=g.one_line() if g else None,
                        guidance_detail=_guidance_out(g) if g else None,
                        provenance=r.provenance or "typed")


def event_view(e: Event) -> EventOut:
    g = render_guidance(e.guidance, e.reply_code, e.enhanced_code, e.reply)
    return EventOut(at=iso(e.at) or "", type=e.type.value, attempt=e.attempt,
                    recipient=e.recipient, reply_code=e.reply_code,
                    enhanced_code=e.enhanced_code, reply=e.reply,
                    guidance=g.one_line() if g else None, detail=e.detail)


def message_view(m: Message, events: tuple[Event, ...] = ()) -> MessageOut:
    return MessageOut(
        id=m.id, status=m.status.value, message_id=m.message_id, attempts=m.attempts,
        created_at=iso(m.created_at) or "", updated_at=iso(m.updated_at) or "",
        next_attempt_at=iso(m.due_at), hold_reason=m.hold_reason,
        resent_from=m.resent_from, sender=m.sender,
        subject=m.content.get("subject", ""),
        metadata={k: v for k, v in m.metadata.items() if not k.startswith("_")},
        recipients=[recipient_view(r) for r in m.recipients],
        events=[event_view(e) for e in events])


def detail_view(detail: MessageDetail) -> MessageOut:
    return message_view(detail.message, detail.events)


def attempt_view(a: Attempt) -> AttemptOut:
    return AttemptOut(attempt=a.number, started_at=iso(a.started_at) or "",
                      finished_at=iso(a.finished_at), relay=a.relay, outcome=a.outcome,
                      transcript=a.transcript)


def _guidance_out(g: catalogue.Guidance) -> GuidanceOut:
    return GuidanceOut(key=g.key, kind=g.kind, title=g.title, explanation=g.explanation,
                       next_step=g.next_step, retryable=g.retryable)
