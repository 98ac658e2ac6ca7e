"""A successful `outbox relay test NAME` ends the relay's back-off (found by a stranger
pass: the relay answered the test, yet its mail waited for the back-off's timer). A real
worker meets a refusing relay and backs it off for ten minutes; a real SMTP server then
listens on that port; `relay test` (through `outbox.main`) says the back-off is ended and
the mail is due now; a real worker delivers it at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import structlog
from tests.created import create_database
from tests.integration.test_cli_relay_health import outbox_cli
from tests.processes import write_config
from tests.smtpd import ScriptedServer, closed_port

from outbox.cli.common import configure_logging
from outbox.config import load_settings
from outbox.core.compose import Submission
from outbox.core.governor import State
from outbox.core.model import MessageStatus
from outbox.service import Outbox


async def deliver_until(config: Path, done: str, submit: bool = False) -> str:
    """Run a real worker until the message is `done` ("deferred" behind a backing-off
    relay, or "sent"); returns the message's id (a new one when `submit`)."""
    service = await Outbox.open(load_settings(str(config)))
    worker = service.start_delivery()
    task = asyncio.create_task(worker.run())
    try:
        if submit:
            await service.messages.submit(Submission(
                sender="app@example.test", to="rcpt@example.test", subject="s", text="hi"))
        deadline = time.monotonic() + 30  # a guard against hanging, not a timing promise
        while time.monotonic() < deadline:
            (message, *_) = (await service.messages.list(None, 1, None)).messages
            paced = await service.store.governor.load_governor_state("default")
            if message.status.value == done and (
                    done == "sent" or paced.state(service.clock()) is State.BACKING_OFF):
                return message.id
            await asyncio.sleep(0.05)
        raise AssertionError(f"the message never became {done}")
    finally:
        worker.stop()
        await asyncio.gather(task, return_exceptions=True)
        await service.close()


async def stored(config: Path, id: str) -> tuple[State, MessageStatus, float]:
    """The relay's governor state, the message's status and seconds until it is due."""
    service = await Outbox.open(load_settings(str(config)))
    try:
        now = service.clock()
        paced = await service.store.governor.load_governor_state("default")
        message = (await service.store.messages.get(id)).message
        due = (message.due_at - now).total_seconds() if message.due_at else float("inf")
        return paced.state(now), message.status, due
    finally:
        await service.close()


def test_a_relay_that_answers_its_test_is_open_and_its_mail_goes_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    port = closed_port()
    config = write_config(tmp_path / "outbox.toml", {
        "database": {"url": f"sqlite:///{tmp_path}/outbox.db"},
        "logging": {"file": str(tmp_path / "outbox.log")},
        "delivery": {"helo_name": "client.test", "connect_timeout": "3s",
                     "poll_interval": "50ms", "relay_backoff_first": "10m",
                     "relay_backoff_max": "1h"},
        "relays": [{"name": "default", "host": "127.0.0.1", "port": port,
                    "security": "none"}]})
    try:
        create_database(config)  # as serve would: no other command creates it
        configure_logging(load_settings(str(config)))  # to the file, as the CLI does
        id = asyncio.run(deliver_until(config, "deferred", submit=True))
        state, status, due = asyncio.run(stored(config, id))
        assert (state, status) == (State.BACKING_OFF, MessageStatus.DEFERRED)
        assert due > 500  # waiting for the ten-minute back-off

        with ScriptedServer(port=port) as server:
            code, out, err = outbox_cli(monkeypatch, capsys, config, "relay", "test",
                                        "default")
            assert code == 0, err
            assert out.splitlines() == [
                f"relay default: 127.0.0.1:{port} ok (no login configured); no mail sent",
                "relay default answered: its back-off (after 1 failure(s)) is ended; 1 "
                "deferred message(s) waiting for it are due now and go at the next claim"]
            state, status, due = asyncio.run(stored(config, id))
            assert (state, status) == (State.OPEN, MessageStatus.DEFERRED) and due <= 0

            assert asyncio.run(deliver_until(config, "sent")) == id
            assert [m.rcpt_tos for m in server.messages] == [("rcpt@example.test",)]

            again = outbox_cli(monkeypatch, capsys, config, "relay", "test", "default")
            assert again[0] == 0 and "back-off" not in again[1]  # nothing left to end
    finally:
        structlog.reset_defaults()
