"""A stopping worker waits, within `[delivery] shutdown_grace`, for every attempt it
started, those started while it waits too, and cancels what is left before its claims
go back to the queue: no attempt outlives it.

Found by tests/delivering.py's teardown check (three attempts still running after the
worker stopped): a claim that rides with a batch of results (worker/recorder.py), asked
for just before the stop, came back while the worker drained. Its attempts began after
the drain had taken the list of what to wait for, so nothing waited for them or
cancelled them: they delivered 5 s after their claims had gone back to the queue, and
then waited forever on the recorder, gone with the worker."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from tests.delivering import _nothing_left_running
from tests.pg import database
from tests.processes import wait_until_async
from tests.smtpd import ScriptedServer, delay

from outbox.clock import utcnow
from outbox.config import RelaySettings, Settings
from outbox.core.compose import Submission
from outbox.core.model import EventType, MessageStatus
from outbox.service import Outbox
from outbox.worker.recorder import ClaimAsk

DATA_SECONDS = 2.0


async def test_an_attempt_that_begins_while_the_worker_drains_ends_before_it_stops(
        tmp_path: Path) -> None:
    with ScriptedServer(script=[delay("DATA", DATA_SECONDS)]) as sink, \
            database("sqlite", tmp_path) as url:
        relay = RelaySettings(name="r", host=sink.host, port=sink.port, security="none")
        settings = Settings(database={"url": url}, relays=[relay],
                            delivery={"helo_name": "client.test"})
        outbox = await Outbox.open(settings)
        try:
            worker = outbox.start_delivery()
            running = asyncio.create_task(worker.run())
            first = await outbox.messages.submit(Submission(
                sender="app@example.test", to="a@example.test", subject="a", text="a"))

            async def in_data() -> bool:
                return sink.handler.bodies >= 1
            await wait_until_async(in_data, "the first message in DATA")
            worker.stop()
            await asyncio.sleep(0.2)  # the claim loop has ended; the worker drains
            second = await outbox.messages.submit(Submission(
                sender="app@example.test", to="b@example.test", subject="b", text="b"))
            # The claim of a ride asked for before the stop, back now.
            now = utcnow()
            claims = await outbox.store.messages.claim_due(
                worker.owner, now, now + timedelta(minutes=5), 1)
            assert [c.message.id for c in claims] == [second.message.id]
            worker.took(ClaimAsk(worker.owner, now, now + timedelta(minutes=5), 0), claims)

            await asyncio.wait_for(running, 30)
            for id in (first.message.id, second.message.id):
                detail = await outbox.messages.get(id)
                assert detail.message.status is MessageStatus.SENT, (id, detail.events)
                assert not [e for e in detail.events if e.type is EventType.UNCERTAIN]
        finally:
            await outbox.close()
        await _nothing_left_running(grace=DATA_SECONDS * 3)
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["a@example.test",
                                                             "b@example.test"]
