"""Domain values → view bodies, with guidance rendered in plain words."""

from __future__ import annotations

from datetime import datetime

from outbox.config.units import format_duration
from outbox.core import guidance as catalogue
from outbox.core.model import Reply
from outbox.store.values import Attempt, ClaimInfo, Event, Message, MessageDetail, Recipient
from outbox.views.models import (
    Accepted,
    AttemptOut,
    ClaimOut,
    EventOut,
    GuidanceOut,
    MessageOut,
    RecipientOut,
)


def iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def render_guidance(key: str | None, code: int | None, enhanced: str | None,
                    text: str | None) -> catalogue.Guidance | None:
    if not key:
        return None
    reply = Reply(code, enhanced, text or "") if code else None
    return catalogue.describe(key, reply)


def guidance_view(g: catalogue.Guidance) -> GuidanceOut:
    return GuidanceOut(key=g.key, kind=g.kind, title=g.title, explanation=g.explanation,
                       next_step=g.next_step, retryable=g.retryable)


def accepted_view(m: Message) -> Accepted:
    return Accepted(id=m.id, status=m.status.value, message_id=m.message_id)


def recipient_view(r: Recipient) -> RecipientOut:
    g = render_guidance(r.guidance, r.reply_code, r.enhanced_code, r.reply)
    return RecipientOut(address=r.address, kind=r.kind, relay=r.relay, status=r.status.value,
                        reply_code=r.reply_code, enhanced_code=r.enhanced_code, reply=r.reply,
                        guidance=g.one_line() if g else None,
                        guidance_detail=guidance_view(g) if g else None,
                        provenance=r.provenance or "typed")


def event_view(e: Event) -> EventOut:
    g = render_guidance(e.guidance, e.reply_code, e.enhanced_code, e.reply)
    return EventOut(at=iso(e.at) or "", type=e.type.value, attempt=e.attempt,
                    recipient=e.recipient, reply_code=e.reply_code,
                    enhanced_code=e.enhanced_code, reply=e.reply,
                    guidance=g.one_line() if g else None, detail=e.detail)


def message_view(m: Message, events: tuple[Event, ...] = (),
                 owner_alive: bool | None = None, within: str = "seconds") -> MessageOut:
    return MessageOut(
        id=m.id, status=m.status.value, message_id=m.message_id, attempts=m.attempts,
        created_at=iso(m.created_at) or "", updated_at=iso(m.updated_at) or "",
        next_attempt_at=iso(m.due_at), hold_reason=m.hold_reason,
        resent_from=m.resent_from, sender=m.sender,
        subject=m.content.subject,
        metadata={k: v for k, v in m.metadata.items() if not k.startswith("_")},
        recipients=[recipient_view(r) for r in m.recipients],
        events=[event_view(e) for e in events],
        claim=claim_view(m.claim, owner_alive, within) if m.claim else None)


def detail_view(detail: MessageDetail) -> MessageOut:
    within = (format_duration(detail.recovered_within) if detail.recovered_within is not None
              else "seconds")
    return message_view(detail.message, detail.events, detail.owner_alive, within)


def claim_view(claim: ClaimInfo, owner_alive: bool | None, within: str = "seconds") -> ClaimOut:
    """Who holds the claim and what happens next; `within`: how soon a dead owner's
    claim is recovered (the sweep interval)."""
    if owner_alive is False:
        note = (f"the worker {claim.owner} is no longer running; a running `outbox serve` or "
                "`outbox worker` puts the message back in the queue at its next sweep "
                f"(within {within}), counting the attempt as uncertain. If none is running, "
                "start one.")
    else:
        note = (f"being delivered by {claim.owner}; if that worker stops answering, another "
                f"takes the message over after its lease, at {iso(claim.lease_until)}")
    return ClaimOut(owner=claim.owner, since=iso(claim.since) or "",
                    lease_until=iso(claim.lease_until) or "", owner_alive=owner_alive, note=note)


def attempt_view(a: Attempt) -> AttemptOut:
    return AttemptOut(attempt=a.number, started_at=iso(a.started_at) or "",
                      finished_at=iso(a.finished_at), relay=a.relay, outcome=a.outcome,
                      transcript=a.transcript)
