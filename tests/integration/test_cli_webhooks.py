"""`outbox webhooks ...` run in-process on a SQLite file: add (the secret printed once,
loopback refused unless allowed), list, log, redeliver, enable, remove; and `outbox keys
create` with rate limits. In-process an error comes out as the exception that `outbox`
prints as one line (cli/common.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.contract.support import new_message
from tests.processes import write_config
from tests.webhook import WebhookReceiver
from typer.testing import CliRunner, Result

from outbox.cli import common
from outbox.cli.app import app
from outbox.config import load_settings
from outbox.errors import InputError, NotFound
from outbox.service import Outbox
from outbox.service.webhook_dispatch import Dispatcher

Run = Callable[..., Result]


def cli(config: Path) -> Run:
    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(app, [*args, "--config", str(config)], input=input)

    return run


def configure(tmp_path: Path, name: str, **webhooks: object) -> Path:
    values: dict[str, object] = {"database": {"url": f"sqlite:///{tmp_path}/outbox.db"},
                                 "secrets": {"key_file": str(tmp_path / "secret.key")}}
    if webhooks:
        values["webhooks"] = webhooks
    return write_config(tmp_path / name, values)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(common, "configure_logging", lambda *_: None)  # keep this process's
    path = configure(tmp_path, "outbox.toml", allowed_networks=["127.0.0.0/8"])
    asyncio.run(_migrate(path))
    return path


async def _migrate(config: Path) -> None:
    outbox = await Outbox.open(load_settings(str(config)))
    await outbox.close()


async def deliver_once(config: Path, messages: int) -> None:
    """Record `messages` queued events and run one dispatcher round, as serve would."""
    outbox = await Outbox.open(load_settings(str(config)), migrate=False)
    try:
        for _ in range(messages):
            await outbox.store.messages.enqueue(new_message(accepted_at=outbox.clock()))
        dispatcher: Dispatcher = outbox.start_webhooks()
        await dispatcher.round()
        await dispatcher.drain()
    finally:
        await outbox.close()


def test_a_loopback_endpoint_is_refused_with_the_default_config(config: Path,
                                                                 tmp_path: Path) -> None:
    strict = cli(configure(tmp_path, "strict.toml"))
    refused = strict("webhooks", "add", "http://127.0.0.1:8080/hook", "--events", "sent")
    assert isinstance(refused.exception, InputError)
    assert refused.exception.one_line() == (
        "127.0.0.1: 127.0.0.1 is a loopback address; add its network to [webhooks] "
        "allowed_networks to allow it")
    assert strict("webhooks", "list").output.strip() == "no webhook endpoints"


def test_add_list_log_redeliver_enable_remove(config: Path) -> None:
    run = cli(config)
    with WebhookReceiver() as receiver:
        added = run("webhooks", "add", receiver.url, "--events", "queued,sent",
                    "--secret-stdin", input="whsec_from_stdin_0123456789\n")
        assert added.exit_code == 0, added.output
        endpoint_id, secret = added.stdout.strip().splitlines()[-2:]
        assert endpoint_id.startswith("wh_") and secret == "whsec_from_stdin_0123456789"
        listed = run("webhooks", "list")
        assert f"{endpoint_id}  {receiver.url}  queued,sent  enabled" in listed.output
        assert secret not in listed.output and secret not in run("webhooks", "list",
                                                                  "--json").output

        asyncio.run(deliver_once(config, 2))
        log = run("webhooks", "log", endpoint_id)
        assert log.exit_code == 0 and log.output.count("delivered") == 2, log.output
        assert "HTTP 200" in log.output
        event_id = json.loads(run("webhooks", "log", endpoint_id, "--json").output
                              )["deliveries"][0]["event_id"]

        again = run("webhooks", "redeliver", event_id)
        assert again.exit_code == 0 and "1 endpoint(s)" in again.output
        asyncio.run(deliver_once(config, 0))
        ids = [r.headers["Outbox-Event-Id"] for r in receiver.requests()]
        assert ids.count(event_id) == 2 and len(ids) == 3

    assert run("webhooks", "enable", endpoint_id).output.strip().endswith("already enabled")
    assert run("webhooks", "remove", endpoint_id).exit_code == 0
    gone = run("webhooks", "log", endpoint_id)
    assert isinstance(gone.exception, NotFound)
    assert gone.exception.message == f"no webhook endpoint with id {endpoint_id}"


def test_bad_input_is_one_line(config: Path) -> None:
    run = cli(config)
    unknown = run("webhooks", "add", "http://127.0.0.1:9/h", "--events", "sent,opened")
    assert isinstance(unknown.exception, InputError)
    assert unknown.exception.message.startswith("unknown event 'opened'")
    not_an_id = run("webhooks", "redeliver", "wh_123")
    assert isinstance(not_an_id.exception, InputError)
    assert not_an_id.exception.message == "'wh_123' is not an event id like evt_42"


def test_keys_create_takes_the_key_s_rate_limits(config: Path) -> None:
    run = cli(config)
    made = run("keys", "create", "--name", "cron", "--scopes", "send,read",
               "--messages-per-minute", "2", "--requests-per-minute", "0")
    assert made.exit_code == 0, made.output
    listed = run("keys", "list").output
    assert "cron  send,read" in listed and "(unlimited requests/min, 2 messages/min)" in listed
    negative = run("keys", "create", "--name", "x", "--scopes", "send",
                   "--messages-per-minute", "-1")
    assert negative.exit_code == 2  # refused by the option itself

    async def principal() -> tuple[int, int]:
        outbox = await Outbox.open(load_settings(str(config)), migrate=False)
        try:
            key = made.stdout.strip().splitlines()[-1]
            found = await outbox.keys.authenticate(f"Bearer {key}")
            return found.requests_per_minute, found.messages_per_minute
        finally:
            await outbox.close()

    assert asyncio.run(principal()) == (0, 2)
