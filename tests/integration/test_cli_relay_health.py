"""`outbox relay ls` reads the shared health snapshot (issue 14, first day): a relay
whose connections are refused is shown as down, never "ok", with the governor's
back-off; a relay nothing was sent to is idle. A real worker (in this process)
meets the refusal; `relay ls` runs through the real entry point (`outbox.main`)."""

from __future__ import annotations

import asyncio
import io
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from tests.created import create_database
from tests.processes import write_config
from tests.smtpd import ScriptedServer, closed_port

from outbox.cli.common import configure_logging
from outbox.config import load_settings
from outbox.core.alerting import RelayState
from outbox.core.compose import Submission
from outbox.core.governor import GovernorState, State
from outbox.main import main
from outbox.service import Outbox
from outbox.service.health import RelayHealth, verdict
from outbox.store.base import RelayAuth


def outbox_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
               config: Path, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["outbox", *args, "--config", str(config)])
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


async def send_until_backing_off(config: Path, relay: str) -> None:
    """A real worker tries the relay until the governor backs it off."""
    service = await Outbox.open(load_settings(str(config)))
    worker = service.start_delivery()
    task = asyncio.create_task(worker.run())
    try:
        await service.messages.submit(Submission(sender="app@example.test",
                                                 to="rcpt@example.test", subject="s",
                                                 text="hello", relay=relay))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            paced = await service.store.governor.load_governor_state(relay)
            if paced.state(service.clock()) is State.BACKING_OFF:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the governor never backed the relay off")
    finally:
        worker.stop()
        await asyncio.gather(task, return_exceptions=True)
        await service.close()


def test_relay_ls_shows_a_refusing_relay_as_down_and_an_untried_one_as_idle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    refusing = closed_port()
    with ScriptedServer() as untried:
        config = write_config(tmp_path / "outbox.toml", {
            "database": {"url": f"sqlite:///{tmp_path}/outbox.db"},
            "logging": {"file": str(tmp_path / "outbox.log")},
            "delivery": {"helo_name": "client.test", "connect_timeout": "3s",
                         "poll_interval": "50ms"},
            "relays": [{"name": "down", "host": "127.0.0.1", "port": refusing,
                        "security": "none"},
                       {"name": "spare", "host": "127.0.0.1", "port": untried.port,
                        "security": "none"}]})
        try:
            create_database(config)  # as serve would: no other command creates it
            configure_logging(load_settings(str(config)))  # to the file, as the CLI does
            asyncio.run(send_until_backing_off(config, "down"))
            code, out, err = outbox_cli(monkeypatch, capsys, config, "relay", "ls")
        finally:
            structlog.reset_defaults()
    assert code == 0, err
    down, spare = out.strip().splitlines()
    assert down.startswith(f"down  127.0.0.1:{refusing}  none  -  credentials: config file  "
                           "down  delivery: backing off until "), down
    assert "after 1 failure(s)" in down and "ok" not in down.split()
    assert spare == (f"spare  127.0.0.1:{untried.port}  none  -  credentials: config file  "
                     "idle  delivery: open")


NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("state", "auth", "outcomes", "governor", "word"), [
    (RelayState.OK, RelayAuth("r"), {"sent": 3}, GovernorState("r"), "ok"),
    (RelayState.OK, RelayAuth("r"), {}, GovernorState("r"), "idle"),
    (RelayState.DEFERRING, RelayAuth("r"), {"deferred": 3}, GovernorState("r"), "failing"),
    (RelayState.OK, RelayAuth("r"), {"sent": 3},
     GovernorState("r", limit=1, reason="421 4.7.0 slow down"), "throttled"),
    (RelayState.OK, RelayAuth("r"), {},
     GovernorState("r", failures=2, backoff_until=NOW - timedelta(seconds=1)), "down"),
    (RelayState.NEEDS_ATTENTION, RelayAuth("r", state="needs_attention"), {},
     GovernorState("r", failures=1, backoff_until=NOW + timedelta(seconds=9)),
     "needs attention"),
])
def test_the_relay_ls_verdict_puts_the_worst_first(
        state: RelayState, auth: RelayAuth, outcomes: dict[str, int],
        governor: GovernorState, word: str) -> None:
    assert verdict(RelayHealth("r", state, auth, outcomes, governor), NOW) == word


def test_a_relay_with_mail_taken_and_no_attempt_finished_is_sending_not_idle() -> None:
    untried = RelayHealth("r", RelayState.OK, RelayAuth("r"), {}, GovernorState("r"))
    assert verdict(untried, NOW, sending=3) == "sending (3 taken, none finished yet)"
    tried = RelayHealth("r", RelayState.OK, RelayAuth("r"), {"sent": 1}, GovernorState("r"))
    assert verdict(tried, NOW, sending=3) == "ok"
