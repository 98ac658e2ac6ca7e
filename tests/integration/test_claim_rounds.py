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
