"""SMTP submission's idempotency key (Message-ID and envelope) is left to the insert to
find taken: a message costs no read of the key first, and a resend after a lost reply
is still answered with the message queued the first time (issue 15: a read per
message was 6 % of serve's time under smtp-source). The listener runs in this process,
so the store's reads can be counted; aiosmtplib is the client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from tests.pg import database
from tests.processes import free_port

from outbox.config import RelaySettings, Settings
from outbox.service import Outbox
from outbox.submission.server import SubmissionListener, bind_socket

KEY = "k" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
async def served(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> AsyncIterator[tuple[Outbox, int, list[str]]]:
    """An Outbox with its listener (no delivery: nothing is sent), the listener's port,
    and the idempotency keys the store was asked to look up."""
    port = free_port()
    with database(request.param, tmp_path) as url:
        outbox = await Outbox.open(Settings(
            database={"url": url},
            relays=[RelaySettings(name="r", host="127.0.0.1", port=free_port(),
                                  security="none")],
            auth={"api_keys": [{"name": "app", "key": KEY, "scopes": ["send"]}]},
            submission={"bind": f"127.0.0.1:{port}", "security": "none",
                        "trusted_networks": ["127.0.0.1/32"], "trusted_key": "app"}))
        looked_up: list[str] = []
        find = outbox.store.messages.find_by_idempotency_key

        async def counted(owner: str, key: str) -> Any:
            looked_up.append(key)
            return await find(owner, key)

        outbox.store.messages.find_by_idempotency_key = counted  # type: ignore[method-assign]
        listener = SubmissionListener(outbox, bind_socket(outbox.settings.submission))
        await listener.start()
        try:
            yield outbox, port, looked_up
        finally:
            await listener.close(grace=5)
            await outbox.close()


def message() -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "app@example.test", "a@example.test", "hi"
    mail["Message-ID"] = "<once@example.test>"
    mail.set_content("hello")
    return mail


async def test_a_new_message_is_queued_without_reading_its_key_first(
        served: tuple[Outbox, int, list[str]]) -> None:
    outbox, port, looked_up = served

    first = await aiosmtplib.send(message(), hostname="127.0.0.1", port=port)
    assert looked_up == []
    again = await aiosmtplib.send(message(), hostname="127.0.0.1", port=port)

    assert "not queued again" not in first[1] and "not queued again" in again[1]
    assert first[1].split("queued as ")[1].split()[0] == again[1].split("queued as ")[1].split()[0]
    assert looked_up  # the resend, answered from the message already queued
    assert len((await outbox.messages.list()).messages) == 1
