"""A relay's sessions counted across the delivery processes of one serve
(`delivery.slots`), with real `flock`s on real files.

`flock` locks belong to an open file description, not to a process: two
`SessionSlots` in this process, each opening its own descriptors, conflict
exactly as two processes do. One test uses a second process, killed with
SIGKILL, to show that the kernel frees what a dead process held.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog.testing
from tests.smtpd import ScriptedServer, delay

from outbox.config import DeliverySettings, RelaySettings
from outbox.delivery.pool import SessionPool
from outbox.delivery.slots import (
    OWED_LOOK,
    SLOT_POLL,
    UNCOUNTED,
    SessionSlots,
    SharedSessions,
    Slot,
)

ServerFactory = Callable[..., ScriptedServer]
RelayFactory = Callable[..., RelaySettings]

MAX_CONNECTIONS = RelaySettings(name="r", host="h").max_connections  # the default, 4


Sharing = Callable[[int], SharedSessions]


@pytest.fixture
def sharing(tmp_path: Path) -> Sharing:
    """Delivery process n's view of one serve's shared sessions (two processes)."""
    return lambda number: SharedSessions(tmp_path / "sessions", processes=2, number=number)


@pytest.fixture
def two(sharing: Sharing) -> Iterator[tuple[SessionSlots, SessionSlots]]:
    """The slots of one relay in two delivery processes, at the default max_connections."""
    first, second = (SessionSlots("relay", lambda: MAX_CONNECTIONS, sharing(n))
                     for n in (1, 2))
    yield first, second
    first.close()
    second.close()


@contextlib.contextmanager
def waiting(slots: SessionSlots) -> Iterator[None]:
    """A message of that process waits for a session meanwhile."""
    slots.wait_begins()
    try:
        yield
    finally:
        slots.wait_ends()


def take(slots: SessionSlots, count: int) -> list[Slot]:
    taken = [slots.try_acquire() for _ in range(count)]
    assert all(slot is not None for slot in taken), taken
    return [slot for slot in taken if slot is not None]


def test_a_lone_process_may_use_every_slot_and_no_more(
        two: tuple[SessionSlots, SessionSlots]) -> None:
    first, second = two
    taken = take(first, MAX_CONNECTIONS)
    assert sorted(slot.index for slot in taken) == list(range(MAX_CONNECTIONS))
    assert first.try_acquire() is None and second.try_acquire() is None
    # Nobody waits: nothing is given back.
    assert not any(first.gives_back(slot) for slot in taken)

    first.release(taken[0])
    assert second.try_acquire() == taken[0]  # the freed file, now locked by the other


def test_a_process_owed_its_share_gets_it(two: tuple[SessionSlots, SessionSlots]) -> None:
    first, second = two
    taken = take(first, MAX_CONNECTIONS)
    share = MAX_CONNECTIONS // 2

    with waiting(second):  # a message of the second process waits for a session
        assert second.try_acquire() is None
        # The first holds more than its share while the other waits: it gives back
        # sessions as they come back to its pool, down to its share, and no further.
        given = []
        for slot in taken:
            if first.gives_back(slot):
                first.release(slot)
                given.append(slot)
        assert len(given) == MAX_CONNECTIONS - share and first.held == share
        # ...and takes no free slot while the other is owed one.
        assert first.try_acquire() is None
        gotten = take(second, share)
        assert second.held == share

    assert {slot.index for slot in gotten} == {slot.index for slot in given}
    # Both at their share, nobody owed: neither gives back.
    assert not any(first.gives_back(slot) for slot in taken if slot not in given)
    assert not any(second.gives_back(slot) for slot in gotten)


def test_a_process_past_its_share_sees_another_owed_within_one_short_look(
        sharing: Sharing) -> None:
    """Whether another process is owed a slot is looked at once per OWED_LOOK, not at
    every session that comes back (two `flock` calls each): a process owed a slot hears
    of it at most that much later, a fraction of its own looks for a free slot."""
    now = [0.0]
    first, second = (SessionSlots("relay", lambda: MAX_CONNECTIONS, sharing(n),
                                  clock=lambda: now[0]) for n in (1, 2))
    try:
        taken = take(first, MAX_CONNECTIONS)
        assert not first.gives_back(taken[0])  # nobody owed: looked, and remembered
        with waiting(second):
            assert not first.gives_back(taken[0])  # the look of a moment ago
            now[0] += OWED_LOOK
            assert first.gives_back(taken[0])
        assert first.gives_back(taken[0])  # no longer owed, not looked at again yet
        now[0] += OWED_LOOK
        assert not first.gives_back(taken[0])
        assert OWED_LOOK < SLOT_POLL
    finally:
        first.close()
        second.close()


def test_a_process_within_its_share_keeps_its_sessions(
        two: tuple[SessionSlots, SessionSlots]) -> None:
    first, second = two
    mine = take(first, MAX_CONNECTIONS // 2)
    take(second, MAX_CONNECTIONS // 2)
    with waiting(second):  # the second wants more than its share: it is not owed it
        assert not any(first.gives_back(slot) for slot in mine)
        assert second.try_acquire() is None


def test_idle_sessions_are_wanted_elsewhere_while_another_process_waits(
        two: tuple[SessionSlots, SessionSlots]) -> None:
    first, second = two
    take(first, MAX_CONNECTIONS // 2)
    take(second, MAX_CONNECTIONS // 2)
    assert not first.wanted_elsewhere()
    with waiting(second):  # not owed (it holds its share), but waiting all the same
        assert first.wanted_elsewhere()
        with waiting(first):  # the first's own waiting mail would take its idle sessions
            assert not first.wanted_elsewhere()
    assert not first.wanted_elsewhere()


def test_one_session_alternates_between_processes_as_sessions_end(
        sharing: Sharing) -> None:
    """A relay of one session (max_connections = 1, or throttled down to 1): each
    process's share is that one. The process that ends a session leaves the slot to the
    one waiting, rather than taking it again at once, as the quicker would."""
    now = [0.0]
    first, second = (SessionSlots("relay", lambda: 1, sharing(n), clock=lambda: now[0])
                     for n in (1, 2))
    try:
        [slot] = take(first, 1)
        first.release(slot)
        [slot] = take(first, 1)  # nobody waits: taken again at once
        with waiting(second):
            first.release(slot)  # e.g. messages_per_connection reached
            with waiting(first):
                assert first.try_acquire() is None  # left to the other
                [slot] = take(second, 1)
            assert second.try_acquire() is None
        now[0] += 0.5  # the second's session carries messages
        with waiting(first):
            second.release(slot)
            with waiting(second):
                assert second.try_acquire() is None  # and back
                [slot] = take(first, 1)
        now[0] += 0.5  # the first's session carries messages, then ends; nobody waits
        first.release(slot)
        assert first.try_acquire() is not None
    finally:
        first.close()
        second.close()


def test_a_lower_limit_while_throttled_is_the_limit_of_every_process(
        sharing: Sharing) -> None:
    limit = [MAX_CONNECTIONS]
    first, second = (SessionSlots("relay", lambda: limit[0], sharing(n)) for n in (1, 2))
    try:
        held = take(first, 2) + take(second, 2)
        limit[0] = 2  # the governor halved the relay's sessions
        assert [slot.index for slot in held if first.gives_back(slot)
                or second.gives_back(slot)] == [slot.index for slot in held
                                                if slot.index >= 2]
        for slot in held[2:]:
            second.release(slot)
        assert second.try_acquire() is None  # slots 0 and 1 are the first's
    finally:
        first.close()
        second.close()


def test_relays_are_counted_apart(sharing: Sharing) -> None:
    one, other = (SessionSlots(name, lambda: 1, sharing(1)) for name in ("one", "other"))
    try:
        assert one.try_acquire() is not None and other.try_acquire() is not None
    finally:
        one.close()
        other.close()


def test_without_a_shared_directory_nothing_is_counted() -> None:
    slots = SessionSlots("relay", lambda: 1)
    assert [slots.try_acquire() for _ in range(3)] == [UNCOUNTED] * 3
    assert not slots.gives_back(UNCOUNTED)


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from outbox.delivery.slots import SessionSlots, SharedSessions
    slots = SessionSlots("relay", lambda: {limit}, SharedSessions(Path(sys.argv[1]), 2, 2))
    taken = [slots.try_acquire() for _ in range({limit})]
    print(sum(slot is not None for slot in taken), flush=True)
    time.sleep(3600)
""")


def test_the_slots_of_a_killed_process_are_free_at_once(sharing: Sharing) -> None:
    shared = sharing(1)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(limit=MAX_CONNECTIONS), str(shared.directory)],
        stdout=subprocess.PIPE, text=True)
    slots = SessionSlots("relay", lambda: MAX_CONNECTIONS, shared)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == str(MAX_CONNECTIONS)
        assert slots.try_acquire() is None  # every session is the other process's

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)

        assert len(take(slots, MAX_CONNECTIONS)) == MAX_CONNECTIONS  # no sweep, no wait
    finally:
        holder.kill()
        slots.close()


def message(number: int) -> bytes:
    return (f"From: a@x.test\r\nTo: b@x.test\r\nSubject: {number}\r\n"
            f"Message-ID: <m{number}@x.test>\r\n\r\nMessage {number}.\r\n").encode()


async def test_two_processes_pools_share_the_relay_s_sessions_fairly(
        sharing: Sharing, smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    """Two processes' pools, each with 40 messages for one relay at once: the relay never
    sees more than its max_connections sessions, and each process gets its share."""
    server = smtp_server(script=[delay("DATA", 0.02)])
    relay = make_relay(server)
    assert relay.max_connections == MAX_CONNECTIONS
    pools = [SessionPool(relay, delivery_settings,
                         sessions=SessionSlots(relay.name, lambda: MAX_CONNECTIONS, sharing(n)))
             for n in (1, 2)]
    opened_alone = 0
    try:
        # The first is alone at first: it may open every session.
        await asyncio.gather(*(pools[0].deliver("a@x.test", ["b@x.test"], message(n))
                               for n in range(MAX_CONNECTIONS)))
        opened_alone = pools[0].sessions_opened
        async with asyncio.timeout(20):  # without sharing, the second would wait 30 s
            reports = await asyncio.gather(*(pools[n % 2].deliver(
                "a@x.test", ["b@x.test"], message(n)) for n in range(100, 180)))
    finally:
        for pool in pools:
            await pool.aclose()

    assert opened_alone == MAX_CONNECTIONS
    assert all(report.failure is None for report in reports)
    assert len(server.messages) == MAX_CONNECTIONS + 80 and server.duplicates == 0
    assert server.most_open == MAX_CONNECTIONS
    # The second got sessions although the first held every slot when it began, and
    # while the first still had mail: they shared, not took turns.
    assert pools[1].sessions_opened >= MAX_CONNECTIONS // 2
    numbers = [int(m.message_id.strip("<>m").split("@")[0]) for m in server.messages
               if m.message_id is not None]
    firsts = [i for i, n in enumerate(numbers) if n >= 100 and n % 2 == 0]
    seconds = [i for i, n in enumerate(numbers) if n >= 100 and n % 2 == 1]
    assert seconds[0] < firsts[-1] and firsts[0] < seconds[-1], numbers


async def test_idle_sessions_of_one_process_go_to_another_that_waits(
        sharing: Sharing, smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    """The first process's sessions sit idle, holding every slot (idle_timeout: 30 s);
    a message of the second gets a session within the pool's next look, not 30 s on."""
    server = smtp_server()
    relay = make_relay(server)
    first, second = (SessionPool(relay, delivery_settings, sessions=SessionSlots(
        relay.name, lambda: MAX_CONNECTIONS, sharing(n))) for n in (1, 2))
    try:
        await asyncio.gather(*(first.deliver("a@x.test", ["b@x.test"], message(n))
                               for n in range(MAX_CONNECTIONS)))
        assert first.idle_sessions == MAX_CONNECTIONS
        async with asyncio.timeout(5):
            report = await second.deliver("a@x.test", ["b@x.test"], message(99))
    finally:
        await first.aclose()
        await second.aclose()

    assert report.failure is None
    assert first.idle_sessions == 0  # given up: idle, and wanted elsewhere
    assert server.most_open == MAX_CONNECTIONS


async def test_a_message_cancelled_as_it_is_handed_a_slot_gives_the_slot_back(
        sharing: Sharing, make_relay: RelayFactory, smtp_server: ServerFactory,
        delivery_settings: DeliverySettings) -> None:
    """A worker that stops while a message waits must not keep a slot nobody uses: the
    relay would have one session fewer until the process ends."""
    relay = make_relay(smtp_server())
    slots = SessionSlots(relay.name, lambda: 1, sharing(1))
    other = SessionSlots(relay.name, lambda: 1, sharing(2))
    pool = SessionPool(relay, delivery_settings, sessions=slots)
    try:
        held = take(other, 1)[0]
        waiting = asyncio.create_task(pool._wait())
        await asyncio.sleep(0)  # in line
        other.release(held)
        slot = slots.try_acquire()
        assert slot is not None
        assert pool._wake_one(slot)  # handed over...
        waiting.cancel()  # ...and cancelled before it could use it
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert slots.held == 0 and other.try_acquire() is not None
    finally:
        await pool.aclose()
        other.close()
        slots.close()


async def test_a_slot_another_process_frees_goes_to_the_message_that_waited_first(
        sharing: Sharing, smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    """A message that comes while another waits for a session joins the line behind it,
    without a look of its own: the slot another process frees goes to the first in line
    (`SessionPool._checkout`), and the newcomer takes the session after it."""
    server = smtp_server()
    relay = make_relay(server, max_connections=2)  # the pool lets two messages in at once
    other = SessionSlots(relay.name, lambda: 2, sharing(2))
    pool = SessionPool(relay, delivery_settings,
                       sessions=SessionSlots(relay.name, lambda: 2, sharing(1)))
    try:
        held, _ = take(other, 2)  # every slot, held by the other process
        first = asyncio.create_task(pool.deliver("a@x.test", ["b@x.test"], message(1)))
        async with asyncio.timeout(5):
            while not pool._waiters:
                await asyncio.sleep(0.001)
        other.release(held)  # free, until the pool's next look (SLOT_POLL) finds it
        newcomer = asyncio.create_task(pool.deliver("a@x.test", ["b@x.test"], message(2)))
        async with asyncio.timeout(10):
            reports = await asyncio.gather(first, newcomer)
    finally:
        await pool.aclose()
        other.close()

    assert all(report.failure is None for report in reports)
    assert [m.message_id for m in server.messages] == ["<m1@x.test>", "<m2@x.test>"]
    assert pool.sessions_opened == 1


async def test_two_processes_pools_take_turns_with_a_relay_of_one_session(
        sharing: Sharing, smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    """max_connections = 1 and both processes with mail: neither waits for the other to
    run out; they take turns as sessions end (every messages_per_connection)."""
    server = smtp_server()
    relay = make_relay(server, max_connections=1)
    delivery = delivery_settings.model_copy(update={"messages_per_connection": 3})
    pools = [SessionPool(relay, delivery, sessions=SessionSlots(relay.name, lambda: 1,
                                                               sharing(n)))
             for n in (1, 2)]
    try:
        async with asyncio.timeout(20):
            reports = await asyncio.gather(*(pools[n % 2].deliver(
                "a@x.test", ["b@x.test"], message(n)) for n in range(24)))
    finally:
        for pool in pools:
            await pool.aclose()

    assert all(report.failure is None for report in reports)
    assert server.most_open == 1 and len(server.message_ids) == 24
    owners = [int(m.message_id.strip("<>m").split("@")[0]) % 2 for m in server.messages
              if m.message_id is not None]
    turns = [owner for i, owner in enumerate(owners) if i == 0 or owners[i - 1] != owner]
    assert len(turns) >= 4, owners  # not one pool's twelve, then the other's


def test_shared_files_that_cannot_be_used_leave_delivery_on_its_own_count(
        sharing: Sharing) -> None:
    """The shared directory gone (replaced by a file here): a process counts its own
    sessions, as a lone `outbox worker` does, instead of failing every delivery."""
    shared = sharing(1)
    slots = SessionSlots("relay", lambda: MAX_CONNECTIONS, shared)
    try:
        [held] = take(slots, 1)  # its file is open: still given back below
        for path in shared.directory.iterdir():
            path.unlink()
        shared.directory.rmdir()
        shared.directory.write_text("not a directory")

        with structlog.testing.capture_logs() as logs:
            assert [slots.try_acquire() for _ in range(2)] == [UNCOUNTED] * 2
            assert not slots.gives_back(held) and not slots.wanted_elsewhere()
            with waiting(slots):
                pass
        assert [entry["event"] for entry in logs] == [
            "cannot count the relay's sessions with serve's other delivery processes; "
            "this process keeps to max_connections on its own"]
        slots.release(held)
        assert slots.held == 0
    finally:
        slots.close()
