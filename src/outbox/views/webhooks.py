"""Event webhook endpoints and their delivery log as the API and the CLI show them:
never an endpoint's secret, except once, at creation."""

from __future__ import annotations

from pydantic import BaseModel, Field

from outbox.core.webhooks import public_event_id
from outbox.store.webhook_values import WebhookDelivery, WebhookEndpoint
from outbox.views.render import iso


class EndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    batch_size: int = Field(description="events per request; 1: each event on its own")
    description: str
    enabled: bool
    disabled_reason: str = Field(description="why it was disabled, while it is")
    failures: int = Field(description="failed requests in a row")
    failing_since: str | None
    last_success_at: str | None
    created_at: str


class EndpointCreated(EndpointOut):
    secret: str = Field(description="signs every request (Outbox-Signature); shown this once")


class EndpointList(BaseModel):
    endpoints: list[EndpointOut]


class DeliveryOut(BaseModel):
    event_id: str
    event_type: str
    message_id: str
    status: str = Field(description="pending, delivered, or failed (given up)")
    attempts: int
    created_at: str
    last_attempt_at: str | None
    response_status: int | None = Field(description="the receiver's last HTTP status")
    error: str
    next_attempt_at: str | None
    delivered_at: str | None


class DeliveryLog(BaseModel):
    deliveries: list[DeliveryOut]
    next_before: int | None = Field(description="pass as ?before= for older deliveries")


def endpoint_view(e: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(id=e.id, url=e.url, events=list(e.events), batch_size=e.batch_size,
                       description=e.description, enabled=e.is_enabled,
                       disabled_reason=e.disabled_reason, failures=e.failures,
                       failing_since=iso(e.failing_since), last_success_at=iso(e.last_success_at),
                       created_at=iso(e.created_at) or "")


def created_view(e: WebhookEndpoint, secret: str) -> EndpointCreated:
    return EndpointCreated(**endpoint_view(e).model_dump(), secret=secret)


def delivery_view(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(event_id=public_event_id(d.event_id), event_type=d.event_type,
                       message_id=d.message_id, status=d.status, attempts=d.attempts,
                       created_at=iso(d.created_at) or "", last_attempt_at=iso(d.last_attempt_at),
                       response_status=d.response_status, error=d.error,
                       next_attempt_at=iso(d.next_at) if d.status == "pending" else None,
                       delivered_at=iso(d.delivered_at))


def log_view(deliveries: tuple[WebhookDelivery, ...], limit: int) -> DeliveryLog:
    more = len(deliveries) == limit and deliveries
    return DeliveryLog(deliveries=[delivery_view(d) for d in deliveries],
                       next_before=deliveries[-1].id if more else None)
