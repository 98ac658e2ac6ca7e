"""A slow relay's claimed mail waits `sending` for a few seconds at most
(delivery/lane.py), at the production defaults.

Found by a stranger pass: behind a relay of four sessions that takes 5 s per message,
a worker claimed its share of the relay's backlog (128 at the defaults), and nearly all
of it waited `sending` for minutes, where it is neither counted as waiting nor
cancellable. Now an attempt that waits `WAIT` seconds for its turn gives its message
back, deferred until about its turn, with no attempt spent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.delivering import delivering
from tests.pg import database
from tests.processes import wait_until_async
from tests.smtpd import ScriptedServer, delay

from outbox.clock import utcnow
from outbox.config import RelaySettings, Settings
from outbox.core.compose import Submission
from outbox.core.model import MessageStatus
from outbox.delivery.lane import WAIT, lane_width
from outbox.service import Outbox
from outbox.service.messages import BatchItem, Submitted
from outbox.worker.relay_room import share

BACKLOG = 250
DATA_SECONDS = 5.0


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


async def statuses(outbox: Outbox) -> Counter[MessageStatus]:
    listed = await outbox.messages.list(limit=1000)
    return Counter(m.status for m in listed.messages)


async def test_a_slow_relays_claimed_mail_goes_back_to_wait_for_its_turn(db_url: str) -> None:
    with ScriptedServer(script=[delay("DATA", DATA_SECONDS)]) as slow:
        # The defaults but the relay's address and a short shutdown grace: the test ends
        # with most of the backlog undelivered.
        relay = RelaySettings(name="slow", host=slow.host, port=slow.port, security="none")
        settings = Settings(database={"url": db_url}, relays=[relay],
                            delivery={"helo_name": "client.test", "shutdown_grace": "1s"})
        assert share(relay, settings.delivery.concurrency) == 128
        async with delivering(settings) as outbox:
            started = utcnow()
            submitted = await outbox.messages.submit_many([BatchItem(Submission(
                sender="app@example.test", to=f"r{n}@example.test", subject=str(n),
                text="hello")) for n in range(BACKLOG)])
            ids = [s.message.id for s in submitted if isinstance(s, Submitted)]

            async def given_back() -> bool:
                # What waited in the lane went back, and what a worker holds is
                # about what the relay gets through in WAIT / 2.
                found = await statuses(outbox)
                return (found[MessageStatus.DEFERRED] > 0
                        and found[MessageStatus.SENDING] <= 4 * lane_width(relay))

            # Before: none deferred; 128 `sending` for the minutes the relay takes.
            await wait_until_async(given_back, "mail given back to wait for its turn",
                                   timeout=WAIT + DATA_SECONDS + 10)
            now = await statuses(outbox)
            # The one due last: still deferred when it is cancelled.
            last = max((await outbox.messages.list(status=MessageStatus.DEFERRED,
                                                   limit=1000)).messages,
                       key=lambda m: m.due_at or m.created_at)
            detail = await outbox.messages.get(last.id)
            tried = await outbox.store.messages.attempts(last.id)
            # A give-back is no attempt on the relay: its health counts only what the
            # relay answered (before: "failing", most "attempts" deferred).
            outcomes = await outbox.store.alerts.relay_outcomes(started)
            cancelled = await outbox.messages.cancel(last.id)
    assert len(ids) == BACKLOG
    # The rest of the backlog was not claimed in its place: the lane narrows the relay's
    # share to what it lets through in WAIT / 2 (about 12 here), so it waits queued.
    # Without the narrowing, 126 were `sending` again and 2 queued.
    assert now[MessageStatus.QUEUED] >= 50, now
    # It spent no attempt, and its history says why it waits.
    assert detail.message.attempts == 0
    assert any("relay_sessions_busy" in (r.guidance or "") for r in detail.message.recipients)
    assert any("not counted" in (e.detail or "") for e in detail.events), detail.events
    assert cancelled.status is MessageStatus.CANCELLED
    assert [a.relay for a in tried] == [""] * len(tried) and tried, tried
    assert set(outcomes.get("slow", {})) <= {"sent"}, outcomes
