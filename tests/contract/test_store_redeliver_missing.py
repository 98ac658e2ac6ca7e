"""Redelivering an event that was never recorded says so, with or without an endpoint
named; "was not delivered to any endpoint" is only for an event that exists and went to
none (both backends)."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, func, select

from outbox.errors import NotFound
from outbox.store.base import Store
from outbox.store.tables import events
from outbox.store.webhook_values import WebhookEndpoint
from tests.contract.support import T0, at, new_message


def last_event_id(conn: Connection) -> int:
    return int(conn.execute(select(func.max(events.c.id))).scalar_one())


async def test_a_missing_event_is_not_found_in_both_forms(store: Store) -> None:
    await store.webhooks.add_endpoint(WebhookEndpoint(
        id="wh_a", url="https://hooks.example.com/a", events=("queued",), secret="sealed",
        batch_size=1, created_at=T0, description=""))
    await store.messages.enqueue(new_message(id="m1"))
    missing = await store._run.read(last_event_id) + 100  # type: ignore[attr-defined]
    for endpoint_id in (None, "wh_a"):
        with pytest.raises(NotFound) as raised:
            await store.webhooks.redeliver(missing, endpoint_id, at(10))
        assert raised.value.one_line() == f"no event evt_{missing}"


async def test_an_event_that_went_to_no_endpoint_asks_for_one(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))  # no endpoint yet: no delivery
    recorded = await store._run.read(last_event_id)  # type: ignore[attr-defined]
    with pytest.raises(NotFound) as raised:
        await store.webhooks.redeliver(recorded, None, at(10))
    assert raised.value.one_line() == (f"event evt_{recorded} was not delivered to any "
                                       "endpoint (name the endpoint to deliver it to)")
