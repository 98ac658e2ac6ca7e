"""How often a worker claims: a claim is a write transaction, on SQLite the one writer's.

When mail trickles in (one message at a time, each delivered before the next arrives), a
claim round that got fewer messages than it asked for has taken everything due, so the
worker waits for new mail instead of claiming again at once; an immediate second claim
would find nothing, once per message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.pg import database
from tests.processes import wait_until_async
from tests.smtpd import ScriptedServer

from outbox.config import RelaySettings, Settings
from outbox.core.compose import Submission
from outbox.core.model import MessageStatus
from outbox.service import Outbox

MESSAGES = 20


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


async def test_mail_that_trickles_in_is_claimed_once_a_message(db_url: str) -> None:
    with ScriptedServer() as server:
        relay = RelaySettings(name="r", host=server.host, port=server.port, security="none")
        # Production defaults but the EHLO name (no DNS lookup of this host).
        settings = Settings(database={"url": db_url}, relays=[relay],
                            delivery={"helo_name": "client.test"})
        outbox = await Outbox.open(settings)
        rounds: list[int] = []  # messages each claim round got
        claim_due = outbox.store.messages.claim_due

        async def counted(*args: Any, **kwargs: Any) -> Any:
            claims = await claim_due(*args, **kwargs)
            rounds.append(len(claims))
            return claims

        outbox.store.messages.claim_due = counted  # type: ignore[method-assign]
        worker = outbox.start_delivery()
        task = asyncio.create_task(worker.run())
        try:
            started = time.monotonic()
            for n in range(MESSAGES):
                accepted = await outbox.messages.submit(Submission(
                    sender="app@example.test", to=f"r{n}@example.test", subject=f"#{n}",
                    text="hello"))

                async def sent(id: str = accepted.message.id) -> bool:
                    message = (await outbox.messages.get(id)).message
                    return message.status is MessageStatus.SENT

                await wait_until_async(sent, f"message #{n} to be sent")
            elapsed = time.monotonic() - started
        finally:
            worker.stop()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()
    assert len(server.message_ids) == MESSAGES
    assert sum(rounds) == MESSAGES
    # One round a message, plus the idle rounds that end by poll_interval (1 s) and a
    # few where new mail woke the worker after an earlier round had already taken it.
    # Claiming again after every round that found mail would make it 2 a message.
    idle_polls = int(elapsed / settings.delivery.poll_interval.total_seconds()) + 1
    assert len(rounds) <= MESSAGES + idle_polls + MESSAGES // 4, rounds


async def test_a_worker_for_backlogs_claims_only_while_a_full_batch_is_due(
        db_url: str) -> None:
    """serve's second delivery process: it leaves mail that the first keeps up with alone,
    and joins once `batch_size` messages are due. At the production defaults (a batch of
    128, a look every second)."""
    with ScriptedServer() as server:
        relay = RelaySettings(name="r", host=server.host, port=server.port, security="none")
        settings = Settings(database={"url": db_url}, relays=[relay],
                            delivery={"helo_name": "client.test"})
        batch = settings.delivery.batch_size
        outbox = await Outbox.open(settings)
        looks: list[int] = []  # what each of its looks at the queue found due
        count_due = outbox.store.messages.count_due

        async def counted(*args: Any, **kwargs: Any) -> int:
            due = await count_due(*args, **kwargs)
            looks.append(due)
            return due

        outbox.store.messages.count_due = counted  # type: ignore[method-assign]
        ids = [await submit(outbox, n) for n in range(batch - 1)]
        worker = outbox.start_delivery(for_backlogs=True)
        task = asyncio.create_task(worker.run())
        try:
            # New mail does not wake it, so these looks are its poll's.
            await wait_until_async(lambda: _true(len(looks) >= 3), "three looks")
            assert set(looks) == {batch - 1}
            assert await statuses(outbox, ids) == {MessageStatus.QUEUED}
            assert not server.message_ids

            ids.append(await submit(outbox, batch))
            await wait_until_async(lambda: _all_sent(outbox, ids), "the batch to be sent")
        finally:
            worker.stop()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()
    assert len(server.message_ids) == batch
    assert looks[-1] < batch  # it stopped claiming once the queue was empty


async def submit(outbox: Outbox, n: int) -> str:
    accepted = await outbox.messages.submit(Submission(
        sender="app@example.test", to=f"r{n}@example.test", subject=f"#{n}", text="hello"))
    return accepted.message.id


async def statuses(outbox: Outbox, ids: list[str]) -> set[MessageStatus]:
    return {(await outbox.messages.get(id)).message.status for id in ids}


async def _true(value: bool) -> bool:
    return value


async def _all_sent(outbox: Outbox, ids: list[str]) -> bool:
    return await statuses(outbox, ids) == {MessageStatus.SENT}
