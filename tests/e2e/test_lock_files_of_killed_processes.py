"""The lock files `kill -9`ed processes leave in `<database>-workers/` (SQLite's liveness
locks) are removed when the next process starts, instead of piling up: at once for a
process that held no claim, after recovery for one that did (recovery needs the file
to see its owner is dead at once, not after its five-minute lease)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import claims, recovered, relay_for, wait_all_sent
from tests.processes import OutboxProcess, wait_until
from tests.smtpd import ScriptedServer, delay

RECOVERY_BOUND = 10.0  # seconds from the restart (SPEC §3, tests/e2e/test_crash_recovery.py)


def _lock_files(url: str) -> dict[str, str]:
    """Each lock file's name → the process it names (its second line)."""
    found = {}
    for path in Path(url.removeprefix("sqlite:///") + "-workers").glob("*.lock"):
        with contextlib.suppress(FileNotFoundError):  # removed since the listing
            found[path.name] = [*path.read_text().splitlines(), "", ""][1]
    return found


def _only_of(process: OutboxProcess, url: str) -> bool:
    assert process.proc is not None
    files = _lock_files(url)
    return bool(files) and all(f"pid {process.proc.pid} " in held for held in files.values())


def _restart(start_outbox: Any, relay: dict[str, Any], killed: OutboxProcess) -> OutboxProcess:
    killed.kill()
    return start_outbox([relay], config=killed.config)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: no files
def test_the_lock_files_of_killed_serves_are_removed_at_the_next_start(
        start_outbox: Any, database_url: str) -> None:
    # Both replies after the final dot held: the restart's two tries then go through. The
    # wait is for the rule's uses, not for two DATA commands: CI killed serve once between
    # a DATA command and its final dot, and the restart's try met the held reply instead.
    held = delay("DATA", 600, times=2)
    with ScriptedServer(script=[held]) as sink:
        relay = relay_for(sink)
        first: OutboxProcess = start_outbox([relay], delivery={"data_timeout": "10m"})
        with first.client() as client:
            for n in range(2):
                assert client.post("/v1/messages", json={
                    "from": "a@example.test", "to": f"stuck{n}@example.test",
                    "text": "x"}).status_code == 202
        wait_until(lambda: held.used == 2, timeout=30, message="two final dots held")
        in_flight = claims(database_url)
        assert len(in_flight) == 2 and _only_of(first, database_url)
        left = set(_lock_files(database_url))  # serve's own and its worker's, which claims
        assert len(left) == 2, left

        second = _restart(start_outbox, relay, first)
        while set(in_flight) - recovered(database_url, in_flight):
            assert time.monotonic() - second.started_at < RECOVERY_BOUND, (
                "the claims of the killed serve waited for their lease")
            time.sleep(0.1)
        wait_until(lambda: _only_of(second, database_url), timeout=10,
                   message=f"the killed serve's lock files to go: {_lock_files(database_url)}")
        wait_all_sent(database_url, 2, timeout=30)

        third = _restart(start_outbox, relay, second)  # second held no claim
        assert _only_of(third, database_url), _lock_files(database_url)
