"""Alerts follow the relay as it is now (issue 14, first day): with a real worker, a
real store (SQLite and PostgreSQL) and an aiosmtpd relay that answers 451 and then
recovers, the failure-rate alert's detail follows the numbers while it is active,
and the alert is cleared at the first evaluation after the relay delivers again,
although its failures are still in the ten-minute window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.pg import database
from tests.smtpd import ScriptedServer, reply

from outbox.config import RelaySettings, Settings
from outbox.core.compose import Submission
from outbox.service import Outbox
from outbox.worker.loop import Worker

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])

KEY = "relay.default.failure_rate"


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def relay() -> Iterator[ScriptedServer]:
    with ScriptedServer(script=[reply("MAIL", "451 4.3.0 Temporary failure, try later")]) as s:
        yield s


@pytest.fixture
async def outbox(db_url: str, relay: ScriptedServer) -> AsyncIterator[Outbox]:
    settings = Settings(
        database={"url": db_url},
        relays=[RelaySettings(name="default", host="127.0.0.1", port=relay.port,
                              security="none")],
        delivery={"poll_interval": "50ms", "helo_name": "client.test"},
        retry={"first_delay": "1h", "max_delay": "2h"},  # one attempt each in this test
        alerts={"window": "10m", "min_attempts": 3, "failure_ratio": 0.5,
                "held_count": 0, "oldest_queued_age": "0s"})
    service = await Outbox.open(settings)
    worker: Worker = service.start_delivery()
    task = asyncio.create_task(worker.run())
    yield service
    worker.stop()
    await asyncio.gather(task, return_exceptions=True)
    await service.close()


async def submit(outbox: Outbox, count: int) -> None:
    for n in range(count):
        await outbox.messages.submit(Submission(sender="app@example.test",
                                                to=f"rcpt{n}@example.test", subject="s",
                                                text="hello"))


async def outcomes_reach(outbox: Outbox, outcome: str, count: int) -> None:
    since = outbox.clock() - outbox.settings.alerts.window
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = (await outbox.store.alerts.relay_outcomes(since)).get("default", {})
        if seen.get(outcome, 0) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} {outcome} attempts, saw {seen}")


async def active_detail(outbox: Outbox) -> str:
    (alert,) = await outbox.store.alerts.list_alerts(active_only=True)
    assert alert.key == KEY
    return alert.detail


async def test_the_alert_keeps_current_text_and_clears_as_soon_as_the_relay_delivers(
        outbox: Outbox, relay: ScriptedServer) -> None:
    await submit(outbox, 3)
    await outcomes_reach(outbox, "deferred", 3)
    raised = await outbox.alerts.evaluate()
    assert [spec.key for spec in raised.to_raise] == [KEY]
    assert await active_detail(outbox) == (
        "3 of 3 attempts in the last 10m did not deliver (3 deferred)")

    await submit(outbox, 3)
    await outcomes_reach(outbox, "deferred", 6)
    again = await outbox.alerts.evaluate()
    assert (again.to_raise, again.to_clear) == ((), ())  # still the same alert...
    assert await active_detail(outbox) == (  # ...saying what is true now
        "6 of 6 attempts in the last 10m did not deliver (6 deferred)")

    relay.set_script()  # the relay is fixed; its 6 failures stay in the window
    await submit(outbox, 1)
    await outcomes_reach(outbox, "sent", 1)
    cleared = await outbox.alerts.evaluate()
    assert cleared.to_clear == (KEY,)
    assert await outbox.store.alerts.list_alerts(active_only=True) == ()
    (history,) = await outbox.store.alerts.list_alerts(active_only=False)
    assert history.cleared_at is not None
    snapshot = await outbox.health.snapshot()
    assert snapshot.relay("default").state.name == "OK"  # as /metrics and doctor see it
