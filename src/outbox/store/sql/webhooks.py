"""`SqlWebhooks`: `store.base.WebhookStore` over a `Runner`, and its SQL: endpoints,
claiming due deliveries (planned in a read, then claimed if still due: `FOR UPDATE
SKIP LOCKED` on PostgreSQL, SQLite's writes serialised by `BEGIN IMMEDIATE`),
results, the delivery log, redelivery.
Deliveries are inserted with their events (sql/webhook_events.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from outbox.core.webhooks import EventFacts, Streak, after_results, plan_requests
from outbox.errors import InputError, NotFound
from outbox.store import rows
from outbox.store.sql.runner import Runner
from outbox.store.tables import UtcDateTime, events, messages
from outbox.store.tables_webhooks import webhook_deliveries, webhook_endpoints
from outbox.store.webhook_values import (
    DELIVERED,
    FAILED,
    PENDING,
    DeliveryResult,
    DueDelivery,
    EndpointStreak,
    WebhookDelivery,
    WebhookEndpoint,
)

d, ep = webhook_deliveries, webhook_endpoints

_FINISH = (
    update(d).where(d.c.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), next_at=bindparam("b_next_at", type_=UtcDateTime()),
            attempts=d.c.attempts + 1, claim_token=None,
            last_attempt_at=bindparam("b_at", type_=UtcDateTime()),
            response_status=bindparam("b_response"), error=bindparam("b_error"),
            delivered_at=bindparam("b_delivered_at", type_=UtcDateTime()))
)


def _to_endpoint(row: Any) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id, url=row.url, events=tuple(row.events), secret=row.secret,
        batch_size=row.batch_size, created_at=row.created_at, description=row.description,
        disabled_at=row.disabled_at, disabled_reason=row.disabled_reason,
        failures=row.failures, failing_since=row.failing_since,
        last_success_at=row.last_success_at)


def add_endpoint(conn: Connection, endpoint: WebhookEndpoint) -> None:
    conn.execute(insert(ep).values(
        id=endpoint.id, url=endpoint.url, events=list(endpoint.events), secret=endpoint.secret,
        batch_size=endpoint.batch_size, description=endpoint.description,
        created_at=endpoint.created_at, disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason))


def list_endpoints(conn: Connection) -> tuple[WebhookEndpoint, ...]:
    query = select(ep).order_by(ep.c.created_at, ep.c.id)
    return tuple(_to_endpoint(row) for row in conn.execute(query))


def get_endpoint(conn: Connection, id: str, *, lock: bool = False) -> WebhookEndpoint:
    query = select(ep).where(ep.c.id == id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no webhook endpoint with id {id}",
                       hint="`outbox webhooks list` shows the endpoints")
    return _to_endpoint(row)


def delete_endpoint(conn: Connection, id: str) -> None:
    get_endpoint(conn, id)
    conn.execute(delete(d).where(d.c.endpoint_id == id))
    conn.execute(delete(ep).where(ep.c.id == id))


def set_endpoint_enabled(conn: Connection, id: str, enabled: bool, reason: str,
                         now: datetime) -> bool:
    endpoint = get_endpoint(conn, id, lock=True)
    if endpoint.is_enabled == enabled:
        return False
    values: dict[str, Any] = ({"disabled_at": None, "disabled_reason": "", "failures": 0,
                               "failing_since": None} if enabled
                              else {"disabled_at": now, "disabled_reason": reason})
    conn.execute(update(ep).where(ep.c.id == id).values(**values))
    return True


def plan_due(conn: Connection, now: datetime, requests: int,
             max_batch: int) -> list[list[int]]:
    """The requests (delivery ids) the oldest due deliveries make (core.webhooks); a
    read, so that an idle dispatcher never takes SQLite's write lock."""
    candidates = (select(d.c.id, d.c.endpoint_id, ep.c.batch_size)
                  .join(ep, ep.c.id == d.c.endpoint_id)
                  .where(d.c.next_at.isnot(None), d.c.next_at <= now, ep.c.disabled_at.is_(None))
                  .order_by(d.c.next_at, d.c.id).limit(requests * max_batch))
    return plan_requests(((r.id, r.endpoint_id, min(r.batch_size, max_batch))
                          for r in conn.execute(candidates)), requests)


def claim_planned(conn: Connection, planned: list[list[int]], now: datetime,
                  lease_until: datetime, token: str) -> list[tuple[DueDelivery, ...]]:
    """Claim the planned deliveries that are still due (another process may have
    claimed some since; on PostgreSQL those it has locked are skipped)."""
    chosen = [id for request in planned for id in request]
    lock = (select(d.c.id).where(d.c.id.in_(chosen), d.c.next_at <= now)
            .with_for_update(skip_locked=True))
    claimed = set(conn.execute(lock).scalars())
    if not claimed:
        return []
    conn.execute(update(d).where(d.c.id.in_(claimed)).values(next_at=lease_until,
                                                            claim_token=token))
    query = (select(d.c.id.label("delivery_id"), d.c.endpoint_id, d.c.attempts,
                    d.c.created_at.label("due_since"), events,
                    messages.c.message_id.label("header_message_id"), messages.c.metadata)
             .join(events, events.c.id == d.c.event_id)
             .join(messages, messages.c.id == events.c.message_id)
             .where(d.c.id.in_(claimed)))
    found = {row.delivery_id: _due(row, token) for row in conn.execute(query)}
    return [tuple(found[id] for id in request if id in found) for request in planned
            if any(id in found for id in request)]


def _due(row: Any, token: str) -> DueDelivery:
    facts = EventFacts(row.id, rows.to_event(row), row.message_id, row.header_message_id,
                       row.metadata or {})
    return DueDelivery(row.delivery_id, row.endpoint_id, token, row.attempts, row.due_since,
                       facts)


def record_deliveries(conn: Connection, results: Sequence[DeliveryResult]) -> list[EndpointStreak]:
    ids = sorted({r.delivery_id for r in results})
    held = {row.id: row for row in conn.execute(
        select(d.c.id, d.c.claim_token, d.c.endpoint_id).where(d.c.id.in_(ids))
        .order_by(d.c.id).with_for_update())}
    accepted = [r for r in results if r.delivery_id in held
                and held[r.delivery_id].claim_token == r.token]
    if accepted:
        conn.execute(_FINISH, [_finish_params(r) for r in accepted])
    by_endpoint: dict[str, list[tuple[bool, datetime]]] = defaultdict(list)
    for result in accepted:
        by_endpoint[held[result.delivery_id].endpoint_id].append((result.ok, result.at))
    return [_update_streak(conn, id, outcomes) for id, outcomes in sorted(by_endpoint.items())]


def _finish_params(result: DeliveryResult) -> dict[str, Any]:
    status = DELIVERED if result.ok else (PENDING if result.next_at else FAILED)
    return {"b_id": result.delivery_id, "b_status": status,
            "b_next_at": result.next_at if status == PENDING else None, "b_at": result.at,
            "b_response": result.response_status, "b_error": result.error[:500],
            "b_delivered_at": result.at if result.ok else None}


def _update_streak(conn: Connection, endpoint_id: str,
                   outcomes: list[tuple[bool, datetime]]) -> EndpointStreak:
    row = conn.execute(select(ep.c.failures, ep.c.failing_since, ep.c.last_success_at)
                       .where(ep.c.id == endpoint_id).with_for_update()).first()
    if row is None:  # deleted meanwhile
        return EndpointStreak(endpoint_id, 0, None)
    after = after_results(Streak(row.failures, row.failing_since, row.last_success_at),
                          outcomes)
    conn.execute(update(ep).where(ep.c.id == endpoint_id).values(
        failures=after.failures, failing_since=after.failing_since,
        last_success_at=after.last_success_at))
    return EndpointStreak(endpoint_id, after.failures, after.failing_since)


def delivery_log(conn: Connection, endpoint_id: str, limit: int,
                 before: int | None) -> tuple[WebhookDelivery, ...]:
    get_endpoint(conn, endpoint_id)
    query = (select(d, events.c.message_id).join(events, events.c.id == d.c.event_id)
             .where(d.c.endpoint_id == endpoint_id).order_by(d.c.id.desc()).limit(limit))
    if before is not None:
        query = query.where(d.c.id < before)
    return tuple(WebhookDelivery(
        id=r.id, endpoint_id=r.endpoint_id, event_id=r.event_id, event_type=r.event_type,
        message_id=r.message_id, created_at=r.created_at, status=r.status,
        attempts=r.attempts, next_at=r.next_at, last_attempt_at=r.last_attempt_at,
        response_status=r.response_status, error=r.error, delivered_at=r.delivered_at)
        for r in conn.execute(query))


def redeliver(conn: Connection, event_id: int, endpoint_id: str | None, now: datetime) -> int:
    again = {"status": PENDING, "next_at": now, "created_at": now, "claim_token": None}
    if endpoint_id is None:
        count = conn.execute(update(d).where(d.c.event_id == event_id).values(**again))
        if not count.rowcount:
            recorded_type(conn, event_id)  # a missing event says so, not "no endpoint had it"
            raise NotFound(f"event evt_{event_id} was not delivered to any endpoint",
                           hint="name the endpoint to deliver it to")
        return int(count.rowcount)
    endpoint = get_endpoint(conn, endpoint_id)
    type_ = recorded_type(conn, event_id)
    # Only what it could have had: the internal events (claimed, attempt, ...) are in
    # no endpoint's events, and say more than an endpoint is given (who claimed what).
    if type_ not in endpoint.events:
        raise InputError(f"endpoint {endpoint_id} does not subscribe to '{type_}' "
                         f"events (it subscribes to: {', '.join(endpoint.events)}), so "
                         f"evt_{event_id} cannot be redelivered to it", field="event_id")
    changed = conn.execute(update(d).where(d.c.event_id == event_id,
                                           d.c.endpoint_id == endpoint_id).values(**again))
    if not changed.rowcount:
        conn.execute(insert(d).values(endpoint_id=endpoint_id, event_id=event_id,
                                      event_type=type_, **again))
    return 1


def recorded_type(conn: Connection, event_id: int) -> str:
    """The recorded event's type; NotFound when there is no such event."""
    found = conn.execute(select(events.c.type).where(events.c.id == event_id)).scalar()
    if found is None:
        raise NotFound(f"no event evt_{event_id}")
    return str(found)


class SqlWebhooks:
    """The webhook store's verbs over one runner."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        await self._run.write(add_endpoint, endpoint)

    async def list_endpoints(self) -> tuple[WebhookEndpoint, ...]:
        return await self._run.read(list_endpoints)

    async def get_endpoint(self, id: str) -> WebhookEndpoint:
        return await self._run.read(get_endpoint, id)

    async def delete_endpoint(self, id: str) -> None:
        await self._run.write(delete_endpoint, id)

    async def set_endpoint_enabled(self, id: str, enabled: bool, reason: str,
                                   now: datetime) -> bool:
        return await self._run.write(set_endpoint_enabled, id, enabled, reason, now)

    async def claim_deliveries(self, now: datetime, lease_until: datetime, token: str,
                               requests: int, max_batch: int) -> list[tuple[DueDelivery, ...]]:
        if requests <= 0:
            return []
        planned = await self._run.read(plan_due, now, requests, max_batch)
        if not planned:
            return []
        return await self._run.write(claim_planned, planned, now, lease_until, token)

    async def record_deliveries(self, results: Sequence[DeliveryResult]) -> list[EndpointStreak]:
        if not results:
            return []
        return await self._run.write(record_deliveries, results)

    async def delivery_log(self, endpoint_id: str, limit: int,
                           before: int | None = None) -> tuple[WebhookDelivery, ...]:
        return await self._run.read(delivery_log, endpoint_id, limit, before)

    async def redeliver(self, event_id: int, endpoint_id: str | None,
                        now: datetime) -> int:
        return await self._run.write(redeliver, event_id, endpoint_id, now)
