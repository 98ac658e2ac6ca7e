"""Retry now on mail the relay probably has already asks first, as Resend does."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.processes import wait_until
from tests.smtpd import ScriptedServer, drop
from tests.ui.conftest import StartUi
from tests.ui.test_messages import status_of

BACKENDS = ["sqlite"]  # a form's behaviour: the store's part is the API's test (e2e)


def test_retry_of_uncertain_mail_asks_and_a_second_click_sends(start_ui: StartUi,
                                                               page: Page) -> None:
    with ScriptedServer(script=[drop("DATA")]) as relay:
        # Three tries, as in the seed walk that found it.
        ui = start_ui(relays=[{"name": "default", "host": "127.0.0.1", "port": relay.port,
                               "security": "none"}], retry={"max_attempts": 3})
        with ui.api() as api:
            answer = api.post("/v1/messages", json={"from": "app@example.test",
                                                    "to": "to@example.test", "text": "hi"})
        id, message_id = answer.json()["id"], answer.json()["message_id"]
        wait_until(lambda: status_of(ui, id) == "failed", timeout=60, message="failed")
        assert relay.message_ids[message_id] == 3
        ui.sign_in(page, "sally")
        page.goto(f"{ui.url}/messages/{id}")
        page.get_by_role("button", name="Retry now").click()
        warning = page.locator("#confirm-retry")
        expect(warning).to_contain_text("probably reached the relay 3 time(s) already")
        assert status_of(ui, id) == "failed"
        relay.set_script()
        warning.get_by_role("button", name="Yes, send it again").click()
        wait_until(lambda: status_of(ui, id) == "sent", timeout=30, message="sent")
        assert relay.message_ids[message_id] == 4
