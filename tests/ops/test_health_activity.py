"""The dashboard's activity counts (`Health.activity`) on a real SQLite store: read from
the events, and one reading serves every dashboard for `ACTIVITY_FRESH` seconds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from outbox.config import Settings
from outbox.core.model import MessageStatus
from outbox.service import health as health_module
from outbox.service.health import Health
from outbox.store.base import Store
from outbox.store.factory import open_store
from outbox.supervision import Loops
from tests.contract.support import T0
from tests.ops.test_alert_engine import Clock, attempt


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    yield opened
    await opened.close()


def sent(counts: dict[tuple[object, str], int]) -> int:
    return sum(n for (_, kind), n in counts.items() if kind == "sent")


async def test_a_reading_is_reused_while_fresh_and_taken_again_after(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    health = Health(Settings(), store, Loops(), clock=Clock())
    since = T0 - timedelta(hours=1)
    await attempt(store, MessageStatus.SENT, 1)
    assert sent(await health.activity(since)) == 1

    await attempt(store, MessageStatus.SENT, 2)
    assert sent(await health.activity(since)) == 1, "within ACTIVITY_FRESH: the same reading"
    assert sent(await health.activity(since - timedelta(hours=1))) == 2, "another window"

    monkeypatch.setattr(health_module, "ACTIVITY_FRESH", 0.0)
    await attempt(store, MessageStatus.SENT, 3)
    assert sent(await health.activity(since)) == 3
