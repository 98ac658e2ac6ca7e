""""Cancel / Retry all matching" acts only on what its confirmation counted: a matching
message accepted between the count and the click is left alone and the notice says so;
when more messages match up to the newest counted one than were counted (an older one
changed into the filter meanwhile), nothing is done and the new number is shown to
confirm again. The listing and counts are the store's: both backends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from playwright.sync_api import Page, expect

from tests.processes import wait_until
from tests.smtpd import RecordingHandler, ScriptedServer, reply
from tests.ui.conftest import StartUi
from tests.ui.test_messages import status_of, submit

TRY_LATER = reply("RCPT", "451 4.3.0 Try again later")
HOUR = {"first_delay": "1h", "max_delay": "1h", "max_attempts": 20, "max_age": "3d"}


class GatedHandler(RecordingHandler):
    """Holds the RCPT of `slow@example.test` until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if address == "slow@example.test":
            await asyncio.to_thread(self.gate.wait, 120)
        return await super().handle_RCPT(server, session, envelope, address, options)


@pytest.fixture
def gated() -> Iterator[ScriptedServer]:
    with ScriptedServer(handler=GatedHandler(), script=[TRY_LATER]) as server:
        yield server
        gate(server).set()


def gate(server: ScriptedServer) -> threading.Event:
    handler: Any = server.handler
    event: threading.Event = handler.gate
    return event


def test_a_message_accepted_after_the_count_is_left_alone(start_ui: StartUi, page: Page,
                                                          sink: ScriptedServer) -> None:
    ui = start_ui(retry=HOUR)
    sink.set_script(TRY_LATER)
    for n in range(3):
        submit(ui, "a@example.test", f"m{n}")
    wait_until(lambda: ui.count("status = 'deferred'") == 3, timeout=60, message="3 deferred")
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/messages?status=deferred&relay=default")
    page.get_by_role("button", name="Cancel all matching…").click()
    expect(page.locator("#confirm-bulk")).to_contain_text("Cancel all 3 message(s)")

    late = submit(ui, "a@example.test", "late")  # matches too, but was not counted
    wait_until(lambda: status_of(ui, late) == "deferred", timeout=60, message="late deferred")
    page.get_by_role("button", name="Yes, cancel all 3").click()
    expect(page.locator("#notice")).to_have_text(
        "3 of 3 matching message(s) cancelled. 1 matching message(s) accepted after the "
        "confirmation were left alone.")
    assert ui.count("status = 'cancelled'") == 3
    assert status_of(ui, late) == "deferred"


def test_a_count_that_grew_is_asked_again(start_ui: StartUi, page: Page,
                                          gated: ScriptedServer) -> None:
    # The older message's RCPT waits at the gate as long as the test needs: at the suite's
    # 3 s command timeout it went deferred before the first confirmation, on a loaded CI
    # machine (stop 61), and was counted there.
    ui = start_ui(relays=[{"name": "default", "host": "127.0.0.1", "port": gated.port,
                           "security": "none"}], retry=HOUR,
                  delivery={"command_timeout": "2m"})
    older = submit(ui, "slow@example.test", "older")  # held at RCPT: not deferred yet
    wait_until(lambda: status_of(ui, older) == "sending", timeout=60, message="older sending")
    for n in range(2):
        submit(ui, "a@example.test", f"m{n}")
    wait_until(lambda: ui.count("status = 'deferred'") == 2, timeout=60, message="2 deferred")
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/messages?status=deferred")
    page.get_by_role("button", name="Retry all matching…").click()
    expect(page.locator("#confirm-bulk")).to_contain_text("Retry all 2 message(s)")

    gate(gated).set()  # the older message is deferred now: it matches, uncounted
    wait_until(lambda: status_of(ui, older) == "deferred", timeout=60, message="older deferred")
    page.get_by_role("button", name="Yes, retry all 2").click()
    expect(page.locator("#bulk-changed")).to_have_text(
        "Nothing was done: 3 message(s) matched, not the 2 you confirmed (the queue changed "
        "meanwhile). Check the number below and confirm again.")
    assert ui.count("status = 'deferred'") == 3  # nothing retried
    page.get_by_role("button", name="Yes, retry all 3").click()
    expect(page.locator("#notice")).to_contain_text("3 of 3 matching message(s) queued")
