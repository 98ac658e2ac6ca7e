"""One relay's backlog does not take a worker's whole capacity (worker/relay_room.py).

A slow relay (5 s before it answers DATA, two sessions) with hundreds of messages due:
mail for a healthy relay submitted after them is delivered while they still wait, and
they wait `queued` (so they can be cancelled), not `sending` without a session. Before,
the worker claimed 256 of them (its concurrency), nearly all waiting for one of the two
sessions, and the healthy relay's mail stayed queued for minutes behind them.
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

from outbox.config import RelaySettings, Settings
from outbox.core.compose import Submission
from outbox.core.model import MessageStatus
from outbox.core.report import DeliveryReport
from outbox.service import Outbox
from outbox.service.messages import BatchItem, Submitted
from outbox.worker.attempt import Attempt, Body
from outbox.worker.relay_room import share

SLOW_SESSIONS = 2


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


def two_relays(fast: ScriptedServer, slow: ScriptedServer, db_url: str) -> Settings:
    """Production defaults but for the relays: `fast` carries what no route matches,
    `slow` (two sessions) the mail for slow.test. A short shutdown grace: the test ends
    with the slow relay's backlog undelivered."""
    relays = [RelaySettings(name="fast", host=fast.host, port=fast.port, security="none"),
              RelaySettings(name="slow", host=slow.host, port=slow.port, security="none",
                            max_connections=SLOW_SESSIONS)]
    return Settings(database={"url": db_url}, relays=relays,
                    routes=[{"match": "slow.test", "relay": "slow"}],
                    delivery={"helo_name": "client.test", "shutdown_grace": "1s"})


def slow_share(settings: Settings) -> int:
    """The most attempts the worker gives the slow relay at once (64 at the defaults)."""
    return share(settings.relays[1], settings.delivery.concurrency)


async def submit_to(outbox: Outbox, addresses: list[str]) -> list[str]:
    submitted = await outbox.messages.submit_many([BatchItem(Submission(
        sender="app@example.test", to=address, subject=address, text="hello"))
        for address in addresses])
    ids = [s.message.id for s in submitted if isinstance(s, Submitted)]
    assert len(ids) == len(addresses), submitted
    return ids


async def statuses(outbox: Outbox, ids: list[str]) -> Counter[MessageStatus]:
    found = {m.id: m.status for m in (await outbox.messages.list(limit=1000)).messages}
    return Counter(found[id] for id in ids)


async def test_a_slow_relays_backlog_leaves_room_for_a_healthy_relays_mail(
        db_url: str) -> None:
    with ScriptedServer() as fast, ScriptedServer(script=[delay("DATA", 5.0)]) as slow:
        settings = two_relays(fast, slow, db_url)
        async with delivering(settings) as outbox:
            slow_ids = await submit_to(outbox, [f"s{n}@slow.test" for n in range(300)])
            fast_ids = await submit_to(outbox, [f"fast{n}@example.test" for n in range(30)])

            async def fast_all_sent() -> bool:
                return (await statuses(outbox, fast_ids))[MessageStatus.SENT] == 30

            await wait_until_async(fast_all_sent, "the healthy relay's 30 messages")
            slow_now = await statuses(outbox, slow_ids)
            slow_received = len(slow.message_ids)
            # The slow relay's mail waits queued, and can be cancelled there.
            await outbox.messages.cancel(slow_ids[-1])
    assert len(fast.message_ids) == 30
    # The fast relay's mail finished first: most of the slow backlog was still waiting,
    # and of it only the slow relay's share of the worker was claimed.
    assert slow_received < 300 - 200, slow_received
    assert slow_now[MessageStatus.SENDING] <= slow_share(settings), slow_now
    assert slow_now[MessageStatus.QUEUED] >= 200, slow_now


async def test_a_relays_backlog_drains_through_its_share(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The share is a bound, not a stop: as the relay's attempts end, the worker claims
    its mail again, until all of it is sent; and no more of its attempts run at once
    than its share."""
    running: Counter[str] = Counter()  # attempts waiting for or holding a session
    peak: Counter[str] = Counter()
    transmit = Attempt._transmit

    async def counted(self: Attempt, relay: str, recipients: list[str], data: Body
                      ) -> DeliveryReport:
        running[relay] += 1
        peak[relay] = max(peak[relay], running[relay])
        try:
            return await transmit(self, relay, recipients, data)
        finally:
            running[relay] -= 1

    monkeypatch.setattr(Attempt, "_transmit", counted)
    with ScriptedServer() as fast, ScriptedServer(script=[delay("DATA", 0.05)]) as slow:
        settings = two_relays(fast, slow, db_url)
        async with delivering(settings) as outbox:
            ids = await submit_to(outbox, [f"s{n}@slow.test" for n in range(120)])
            ids += await submit_to(outbox, [f"fast{n}@example.test" for n in range(40)])

            async def all_sent() -> bool:
                return (await statuses(outbox, ids))[MessageStatus.SENT] == len(ids)

            await wait_until_async(all_sent, "every message", timeout=60)
    assert len(slow.message_ids) == 120 and len(fast.message_ids) == 40
    assert 0 < peak["slow"] <= slow_share(settings), peak


async def test_two_slow_relays_backlogs_leave_room_for_a_healthy_relays_mail(
        db_url: str) -> None:
    """Each relay may take up to half the worker (four sessions: 128 of 256 attempts), so
    two slow relays could fill it between them: the last quarter is kept for relays with
    few attempts running (relay_room.reserve), and a healthy relay's mail submitted after
    both backlogs is delivered while they wait. At the production defaults (concurrency
    256, a claim of 128)."""
    with (ScriptedServer() as fast, ScriptedServer(script=[delay("DATA", 5.0)]) as one,
          ScriptedServer(script=[delay("DATA", 5.0)]) as two):
        relays = [RelaySettings(name="fast", host=fast.host, port=fast.port,
                                security="none")]
        relays += [RelaySettings(name=name, host=server.host, port=server.port,
                                 security="none", max_connections=4)
                   for name, server in (("one", one), ("two", two))]
        settings = Settings(database={"url": db_url}, relays=relays,
                            routes=[{"match": "one.test", "relay": "one"},
                                    {"match": "two.test", "relay": "two"}],
                            delivery={"helo_name": "client.test", "shutdown_grace": "1s"})
        assert sum(share(relay, settings.delivery.concurrency)
                   for relay in relays[1:]) >= settings.delivery.concurrency
        async with delivering(settings) as outbox:
            slow_ids = await submit_to(outbox, [f"a{n}@one.test" for n in range(200)])
            slow_ids += await submit_to(outbox, [f"b{n}@two.test" for n in range(200)])
            fast_ids = await submit_to(outbox, [f"fast{n}@example.test" for n in range(30)])

            async def fast_all_sent() -> bool:
                return (await statuses(outbox, fast_ids))[MessageStatus.SENT] == 30

            # Before: 256 slow attempts, 8 sessions, 5 s each: the first slot in 5 s,
            # the healthy relay's 30 messages after a minute or more.
            await wait_until_async(fast_all_sent, "the healthy relay's 30 messages",
                                   timeout=20)
            slow_now = await statuses(outbox, slow_ids)
    assert len(fast.message_ids) == 30
    assert slow_now[MessageStatus.SENDING] <= 3 * settings.delivery.concurrency // 4, slow_now
