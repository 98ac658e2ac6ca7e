"""`OffTheLoop` with its planning process (issue 17): a large message is planned in
a process of its own and comes back as a thread would have planned it; a refused one
raises the caller's error; a killed process is replaced while the work goes on;
Ctrl-C does not reach it; `close` ends it, and so does the end of its parent, even by
`kill -9`. Real processes, started as `outbox serve` starts them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

import pytest
from structlog.testing import capture_logs
from tests.processes import alive, wait_until

from outbox.core.compose import Limits, Submission, plan_message
from outbox.core.routing import RoutingTable
from outbox.errors import InvalidAddress
from outbox.niceness import BACKGROUND
from outbox.turns import LARGE, OffTheLoop

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
LIMITS = Limits(max_message_size=1_000_000, max_attachment_size=100_000,
                blocked_extensions=frozenset({".exe"}))
ROUTING = RoutingTable(routes=(), default_relay="default")
SIZE = LARGE + 100


# The work sent to the planning process is pickled by reference, and the process imports
# what it names: a function of this module made each process import it, and with it
# tests.processes and outbox.runtime (0.9 s of CPU a process, 7 of the module's 12.5 s).
pid_here = os.getpid
fixed_id = "<fixed@{}>".format  # fixed_id("example.test") == "<fixed@example.test>"


def planning_of(submission: Submission) -> partial[object]:
    return partial(plan_message, submission, limits=LIMITS, routing=ROUTING,
                   known_relays=["default"], now=NOW, make_message_id=fixed_id)


def big(*extra: str) -> Submission:
    return Submission(sender="app@example.test", subject="many", text="hello",
                      to=[f"r{n}@example.test" for n in range(SIZE - len(extra))] + [*extra])


async def running(planning: OffTheLoop, other_than: int | None = None) -> int:
    deadline = time.monotonic() + 60
    while (pid := planning.pid) is None or pid == other_than:
        assert time.monotonic() < deadline, "the planning process did not start"
        await asyncio.sleep(0.02)
    return pid


@pytest.fixture
async def planning() -> AsyncIterator[OffTheLoop]:
    planning = OffTheLoop(imports=("outbox.core.compose",))
    planning.start()
    await running(planning)
    yield planning
    await asyncio.to_thread(planning.close)


async def test_large_work_runs_in_the_process_and_plans_as_a_thread_would(
        planning: OffTheLoop) -> None:
    assert planning.in_a_process(SIZE) and not planning.in_a_process(LARGE)
    there = await planning.run(SIZE, pid_here)
    assert there == planning.pid and there != os.getpid()
    assert await planning.run(LARGE, pid_here) == os.getpid()  # small: where it is
    # Serve's own requests come first when the cores are busy (outbox.niceness).
    assert os.getpriority(os.PRIO_PROCESS, there) == \
        os.getpriority(os.PRIO_PROCESS, 0) + BACKGROUND

    submission = big()
    in_the_process = await planning.run(SIZE, planning_of(submission))
    on_a_thread = await OffTheLoop().run(SIZE, planning_of(submission))
    assert in_the_process == on_a_thread == planning_of(submission)()


async def test_work_whose_data_is_too_big_to_copy_is_done_on_a_thread(
        planning: OffTheLoop) -> None:
    assert not planning.in_a_process(SIZE, portable=False)
    assert await planning.run(SIZE, pid_here, portable=False) == os.getpid()
    assert await planning.run(SIZE, pid_here) == planning.pid


async def test_a_refused_message_raises_the_error_a_thread_raises(
        planning: OffTheLoop) -> None:
    submission = big("not an address")
    with pytest.raises(InvalidAddress) as on_a_thread:
        planning_of(submission)()
    with pytest.raises(InvalidAddress) as through_the_process:
        await planning.run(SIZE, planning_of(submission))
    assert through_the_process.value.field == on_a_thread.value.field
    assert through_the_process.value.message == on_a_thread.value.message
    assert planning.pid is not None  # a refusal is not a broken process


async def test_a_killed_process_is_replaced_and_the_work_is_done_meanwhile(
        planning: OffTheLoop) -> None:
    first = await running(planning)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not alive(first), timeout=10, message="the kill")
    # The call that finds it gone is answered anyway, on a thread.
    assert await planning.run(SIZE, planning_of(big())) == planning_of(big())()
    second = await running(planning, other_than=first)
    assert await planning.run(SIZE, pid_here) == second


async def test_ctrl_c_does_not_reach_the_process(planning: OffTheLoop) -> None:
    pid = await running(planning)
    os.kill(pid, signal.SIGINT)
    await asyncio.sleep(0.3)
    assert alive(pid) and await planning.run(SIZE, pid_here) == pid


async def test_close_ends_the_process() -> None:
    planning = OffTheLoop()
    planning.start()
    pid = await running(planning)
    await asyncio.to_thread(planning.close)
    assert not alive(pid) and planning.pid is None
    assert await planning.run(SIZE, pid_here) == os.getpid()  # on a thread now
    assert not planning.in_a_process(SIZE)


def starting() -> bool:
    return any(t.name == "outbox-planning-start" for t in threading.enumerate())


async def start_and_wait(planning: OffTheLoop) -> None:
    """Start it, and wait until the start has failed or succeeded."""
    planning.start()
    deadline = time.monotonic() + 60
    while starting():
        assert time.monotonic() < deadline, "the start neither failed nor succeeded"
        await asyncio.sleep(0.02)


async def test_a_process_that_cannot_start_leaves_the_work_on_a_thread() -> None:
    """Its first call fails (here: a module it cannot import): a warning, the work on a
    thread, and no new try before RETRY_AFTER."""
    planning = OffTheLoop(imports=("outbox.no_such_module",))
    with capture_logs() as logs:
        await start_and_wait(planning)
    try:
        [warning] = [e for e in logs if e["event"].startswith("could not start the planning")]
        assert "ModuleNotFoundError" in warning["error"] and warning["log_level"] == "warning"
        assert planning.pid is None and not planning.in_a_process(SIZE)
        assert await planning.run(SIZE, pid_here) == os.getpid()
        planning.start()  # within RETRY_AFTER: no new try
        assert not starting()
    finally:
        await asyncio.to_thread(planning.close)


async def test_a_process_that_could_not_start_is_tried_again_by_a_later_large_message(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The warning says it is tried again after RETRY_AFTER: the first large message
    after that starts it (here the cause of the failure is gone by then). RETRY_AFTER
    is cut from 60 s to 0.5 s so the test does not wait a minute; that no try comes
    sooner at the default is test_a_process_that_cannot_start_leaves_the_work_on_a_thread."""
    monkeypatch.setattr("outbox.turns.RETRY_AFTER", 0.5)
    planning = OffTheLoop(imports=("outbox.no_such_module",))
    await start_and_wait(planning)
    try:
        assert planning.pid is None
        planning._imports = ()  # what made it fail is gone
        assert await planning.run(SIZE, pid_here) == os.getpid()  # on a thread: too soon
        await asyncio.sleep(0.6)
        await planning.run(SIZE, pid_here)  # past RETRY_AFTER: starts it again
        wait_until(lambda: planning.pid is not None, timeout=60,
                   message="the planning process to start on the second try")
        assert await planning.run(SIZE, pid_here) == planning.pid != os.getpid()
    finally:
        await asyncio.to_thread(planning.close)


PARENT = textwrap.dedent("""
    import asyncio
    import time
    from outbox.turns import OffTheLoop

    async def main():
        planning = OffTheLoop()
        # A start that fails (a CI loaded past its 30 s) is tried again RETRY_AFTER later;
        # no answer in 200 s ends the parent, and the test fails at once.
        deadline = time.monotonic() + 200
        while planning.pid is None and time.monotonic() < deadline:
            planning.start()
            await asyncio.sleep(0.02)
        if planning.pid is None:
            return
        print("PLANNING", planning.pid, flush=True)
        await asyncio.sleep(600)

    if __name__ == "__main__":
        asyncio.run(main())
""")


def test_the_process_ends_when_its_parent_is_killed_with_kill_9(tmp_path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        line = ""
        while not line.startswith("PLANNING "):  # after the log line of its start
            line = parent.stdout.readline()
            assert line, "the parent ended before its planning process ran"
        child = int(line.split()[1])
        assert alive(child)
        parent.kill()  # SIGKILL to the parent alone, not its process group
        parent.wait(10)
        wait_until(lambda: not alive(child), timeout=20,
                   message="the planning process to end with its parent")
    finally:
        parent.kill()
