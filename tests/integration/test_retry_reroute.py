"""A retry moves held mail to the relay the current routes give it (the internal-domains
policy, fixed in the config since) in the same transaction as the retry: a retry that
is refused moves nothing. Before, the move was committed first, so a refused retry (or
a database lost between the two) left the recipients on another relay than the message
said it had been refused on. A real store on both backends, no delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.pg import database

from outbox.config import Settings
from outbox.core.compose import Submission
from outbox.core.model import MessageStatus
from outbox.errors import Conflict
from outbox.service import Outbox

OUTSIDE = {"name": "outside", "host": "127.0.0.1", "port": 2525, "security": "none"}
INSIDE = {"name": "inside", "host": "127.0.0.1", "port": 2526, "security": "none",
          "internal": True}


def settings(url: str, **fixed: Any) -> Settings:
    return Settings(database={"url": url}, internal_domains=["corp.test"],
                    relays=[OUTSIDE, *fixed.get("relays", [])], routes=fixed.get("routes", []))


async def held_message(url: str, *, cancel: bool) -> str:
    outbox = await Outbox.open(settings(url))
    try:
        accepted = await outbox.messages.submit(Submission(
            sender="app@example.test", to="boss@corp.test", subject="s", text="t"))
        assert accepted.message.status is MessageStatus.HELD
        if cancel:
            await outbox.messages.cancel(accepted.message.id)
        return accepted.message.id
    finally:
        await outbox.close()


async def retried(url: str, id: str) -> tuple[Any, list[str]]:
    """The retry's result (or its refusal) under the fixed config, and the relays the
    message's recipients are on afterwards."""
    outbox = await Outbox.open(settings(url, relays=[INSIDE],
                                        routes=[{"match": "corp.test", "relay": "inside"}]))
    try:
        try:
            result: Any = (await outbox.messages.retry(id)).status
        except Conflict as exc:
            result = exc
        detail = await outbox.messages.get(id)
        return result, [r.relay for r in detail.message.recipients]
    finally:
        await outbox.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_held_message_retried_goes_to_the_route_now_configured(
        backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path) as url:
        id = await held_message(url, cancel=False)
        result, relays = await retried(url, id)
    assert result is MessageStatus.QUEUED and relays == ["inside"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_refused_retry_moves_no_recipient(backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path) as url:
        id = await held_message(url, cancel=True)
        result, relays = await retried(url, id)
    assert isinstance(result, Conflict) and "cancelled" in result.message
    assert relays == ["outside"]
