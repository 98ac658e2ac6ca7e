"""The webhook store's values (`store.base.WebhookStore`): endpoints, claimed
deliveries, their results and the delivery log. All times are timezone-aware UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from outbox.core.webhooks import EventFacts

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: str  # wh_...
    url: str
    events: tuple[str, ...]  # core.webhooks.WEBHOOK_EVENTS it subscribes to
    secret: str  # sealed (outbox.secrets); never shown after creation
    batch_size: int  # events per request; 1: one event per request, as it is
    created_at: datetime
    description: str = ""
    disabled_at: datetime | None = None
    disabled_reason: str = ""
    failures: int = 0  # failed requests in a row
    failing_since: datetime | None = None  # the first of those
    last_success_at: datetime | None = None

    @property
    def is_enabled(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A delivery claimed for one try: `token` holds it until `record_deliveries`."""

    id: int
    endpoint_id: str
    token: str
    attempts: int  # tries made before this one
    created_at: datetime  # when the event happened (or it was redelivered)
    facts: EventFacts


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """One try of one delivery; written only while `token` still holds it."""

    delivery_id: int
    token: str
    ok: bool
    at: datetime
    response_status: int | None = None  # the receiver's HTTP status, if it answered
    error: str = ""  # why it failed, in one line
    next_at: datetime | None = None  # a failure: the next try; None: given up


@dataclass(frozen=True, slots=True)
class EndpointStreak:
    """An endpoint's failures in a row after some results were recorded."""

    endpoint_id: str
    failures: int
    failing_since: datetime | None


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One line of an endpoint's delivery log."""

    id: int
    endpoint_id: str
    event_id: int
    event_type: str
    message_id: str
    created_at: datetime
    status: str  # pending | delivered | failed (given up)
    attempts: int
    next_at: datetime | None
    last_attempt_at: datetime | None
    response_status: int | None
    error: str
    delivered_at: datetime | None
