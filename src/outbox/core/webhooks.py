"""Delivery-event webhooks: which events are sent, what a delivery's body says,
when a failed delivery is tried again, and when an endpoint is disabled.

Pure (STYLE principle 12): the store records the events (`events` table) and a
delivery per subscribed endpoint in the same transaction; the dispatcher
(`service.webhook_dispatch`) posts them and persists what these rules decide.

An event's body (one per POST, or `{"events": [...]}` for an endpoint that
batches):

    {"id": "evt_42", "type": "sent", "created_at": "2030-01-01T12:00:00Z",
     "message": {"id": "...", "message_id": "<...@...>", "metadata": {...}},
     "recipient": "ann@example.com", "attempt": 1,
     "reply": {"code": 250, "enhanced_code": "2.0.0", "text": "ok"},
     "guidance": {"key": ..., "title": ..., "explanation": ..., "next_step": ...},
     "detail": "..."}
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from outbox.core import guidance as catalogue
from outbox.core.model import Event, EventType, Reply

EVENT_PREFIX = "evt_"
# The message events an endpoint can subscribe to (the others are internal).
WEBHOOK_EVENTS: tuple[str, ...] = tuple(t.value for t in (
    EventType.QUEUED, EventType.SENT, EventType.PARTIALLY_SENT, EventType.DEFERRED,
    EventType.FAILED, EventType.HELD, EventType.RELEASED, EventType.UNCERTAIN,
    EventType.CANCELLED, EventType.BOUNCED, EventType.COMPLAINED, EventType.UNSUBSCRIBED))


class UnknownEvent(ValueError):
    """An event name no endpoint can subscribe to."""


def parse_events(names: Iterable[str]) -> tuple[str, ...]:
    """Event names from a list or comma-separated strings, in the canonical order;
    `*` means all. `UnknownEvent` names the first unknown one."""
    found = {n.strip().lower() for part in names for n in part.split(",") if n.strip()}
    if "*" in found:
        return WEBHOOK_EVENTS
    unknown = sorted(found - set(WEBHOOK_EVENTS))
    if unknown:
        raise UnknownEvent(f"unknown event '{unknown[0]}' (known: {', '.join(WEBHOOK_EVENTS)})")
    if not found:
        raise UnknownEvent(f"give at least one event ({', '.join(WEBHOOK_EVENTS)}, or *)")
    return tuple(name for name in WEBHOOK_EVENTS if name in found)


def public_event_id(event_id: int) -> str:
    return f"{EVENT_PREFIX}{event_id}"


def parse_event_id(text: str) -> int | None:
    """`evt_42` (or `42`) → 42; None when it is no event id."""
    digits = text.strip().removeprefix(EVENT_PREFIX)
    return int(digits) if digits.isdigit() and len(digits) < 19 else None


@dataclass(frozen=True, slots=True)
class EventFacts:
    """An event and what the payload tells of its message."""

    event_id: int
    event: Event
    message_id: str  # Outbox's id
    header_message_id: str  # the Message-ID header
    metadata: Mapping[str, Any]


def event_payload(facts: EventFacts) -> dict[str, Any]:
    event = facts.event
    reply = Reply(event.reply_code, event.enhanced_code, event.reply or "") \
        if event.reply_code else None
    return {
        "id": public_event_id(facts.event_id), "type": event.type.value,
        "created_at": _iso(event.at),
        "message": {"id": facts.message_id, "message_id": facts.header_message_id,
                    "metadata": {k: v for k, v in facts.metadata.items()
                                 if not k.startswith("_")}},  # "_owner": Outbox's own
        "recipient": event.recipient, "attempt": event.attempt,
        "reply": {"code": reply.code, "enhanced_code": reply.enhanced, "text": reply.text}
        if reply else None,
        "guidance": _guidance(event.guidance, reply), "detail": event.detail,
    }


def request_body(payloads: list[dict[str, Any]], batched: bool) -> dict[str, Any]:
    """One event as it is, or several (an endpoint that batches) in a list."""
    return {"events": payloads} if batched else payloads[0]


def _guidance(key: str | None, reply: Reply | None) -> dict[str, Any] | None:
    if not key:
        return None
    g = catalogue.describe(key, reply)
    return {"key": g.key, "kind": g.kind, "title": g.title, "explanation": g.explanation,
            "next_step": g.next_step, "retryable": g.retryable}


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """When a failed delivery is tried again and when it is given up; when a
    failing endpoint is disabled."""

    first_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(hours=1)
    max_age: timedelta = timedelta(days=3)
    disable_after_failures: int = 20  # requests in a row that failed ...
    disable_after: timedelta = timedelta(hours=24)  # ... for at least this long
    jitter: float = 0.2

    def next_try(self, attempts_made: int, created_at: datetime, now: datetime,
                 rng: random.Random) -> datetime | None:
        """After `attempts_made` failed tries: when to try again, or None to give up
        (the event is older than `max_age`). The last try is at the deadline."""
        deadline = created_at + self.max_age
        if now >= deadline:
            return None
        exponent = min(max(attempts_made - 1, 0), 40)
        base = self.first_delay.total_seconds() * 2 ** exponent
        seconds = min(base * (1 + rng.uniform(-self.jitter, self.jitter)),
                      self.max_delay.total_seconds())
        return min(now + timedelta(seconds=max(seconds, 0.0)), deadline)

    def should_disable(self, failures: int, failing_since: datetime | None,
                       now: datetime) -> bool:
        """An endpoint whose every request failed, `disable_after_failures` in a row,
        for `disable_after`: it is down for good, not restarting."""
        if failing_since is None or self.disable_after_failures <= 0:
            return False
        return failures >= self.disable_after_failures and \
            now - failing_since >= self.disable_after


@dataclass(frozen=True, slots=True)
class Streak:
    """An endpoint's failed requests in a row, since when, and its last success."""

    failures: int = 0
    failing_since: datetime | None = None
    last_success_at: datetime | None = None


def after_results(streak: Streak, results: Iterable[tuple[bool, datetime]]) -> Streak:
    """The streak after these (ok, at) results, taken in time order: a success ends it."""
    failures, since, success = streak.failures, streak.failing_since, streak.last_success_at
    for ok, at in sorted(results, key=lambda result: result[1]):
        if ok:
            failures, since, success = 0, None, at
        else:
            failures, since = failures + 1, since or at
    return Streak(failures, since, success)


def plan_requests(due: Iterable[tuple[int, str, int]], requests: int) -> list[list[int]]:
    """Deliveries (id, endpoint, the endpoint's batch size), oldest due first, into at
    most `requests` requests: each carries one endpoint's deliveries, up to its batch
    size, in order; the requests whose oldest delivery is oldest come first."""
    planned: list[list[int]] = []
    open_request: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}
    for id, endpoint, batch_size in due:
        current = open_request.get(endpoint)
        if current is None or len(current) >= sizes[endpoint]:
            if len(planned) >= requests:
                continue
            current = open_request[endpoint] = []
            sizes[endpoint] = max(batch_size, 1)
            planned.append(current)
        current.append(id)
    return planned
