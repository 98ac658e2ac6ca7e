"""`outbox status ID` prints what to do for every held message. A tester saw a message
held by the internal-domains policy show only the hold detail ("... would leave through
relay ..."), though its `held` event carried the next step (route the domain through a
relay with internal = true): the CLI printed recipient guidance only, and a message held
at submit has none. A real store, no relay needed (nothing is sent)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from tests.pg import database

from outbox.cli.tables import print_detail
from outbox.config import Settings
from outbox.core import guidance
from outbox.core.compose import Submission
from outbox.core.model import MessageStatus
from outbox.service import Outbox
from outbox.views.render import detail_view


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_message_held_for_the_internal_domains_policy_shows_the_next_step(
        backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path) as url:
        settings = Settings(database={"url": url}, internal_domains=["corp.test"], relays=[
            {"name": "outside", "host": "127.0.0.1", "port": 2525, "security": "none"}])
        outbox = await Outbox.open(settings)
        try:
            accepted = await outbox.messages.submit(Submission(
                sender="app@example.test", to="boss@corp.test", subject="s", text="t"))
            detail = await outbox.messages.get(accepted.message.id)
        finally:
            await outbox.close()
    assert detail.message.status is MessageStatus.HELD
    console = Console(width=300, record=True)
    print_detail(console, detail_view(detail))
    shown = console.export_text()
    words = guidance.describe("internal_route_violation")
    assert f"held: {words.one_line()}" in shown
    assert "Route this domain through a relay with internal = true" in shown
