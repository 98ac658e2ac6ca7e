"""Relays → Set credentials logs in with them first, as `outbox relay set-credentials`
does: a relay that refuses them (or offers no AUTH) gets nothing stored and its answer is
shown, so the next message is not held. An empty form says what to do on this page.
Clear stored credentials (admin only, after a confirmation) lets the config's apply
again. Real relays: tests/smtpd.py with and without AUTH."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.processes import wait_until
from tests.smtpd import ScriptedServer
from tests.ui.conftest import StartUi
from tests.ui.support import Ui, axe_violations, post_form

# One backend (tests/ui/conftest.py): the store's relay credentials are held on both by
# tests/contract/test_store_relay_auth.py; this page cannot differ by backend.
BACKENDS = ("sqlite",)
ACCOUNT = ("mailer", "right-pass-81")


@pytest.fixture
def auth_relay() -> Iterator[ScriptedServer]:
    with ScriptedServer(auth=ACCOUNT) as server:
        yield server


def set_credentials(page: Page, user: str, password: str) -> None:
    card = page.locator("section.relay")
    if card.locator("details").get_attribute("open") is None:
        card.get_by_text("Set credentials").click()
    card.get_by_label("User name").fill(user)
    card.get_by_label("Password").fill(password)
    card.locator("details form button[type=submit]").click()


def test_a_relay_without_auth_gets_no_credentials(ui: Ui, page: Page,
                                                  sink: ScriptedServer) -> None:
    ui.sign_in(page, "admin")
    page.goto(f"{ui.url}/relays")
    set_credentials(page, "mailer", "some-password")
    problem = page.locator("#problem-default")
    expect(problem).to_have_text(
        f"Relay default: 127.0.0.1:{sink.port} could not log in (the relay offers no AUTH; "
        "Outbox can use PLAIN, LOGIN); nothing stored. Next step: if the relay needs no "
        "login, store none; if it offers AUTH only over TLS, set its security to starttls "
        "or tls first.")
    expect(page.locator(".relay dl")).to_contain_text("none (config)")
    with ui.api() as api:  # nothing stored: the next message goes, not held
        answer = api.post("/v1/messages", json={"from": "app@example.test",
                                                "to": "to@example.test", "subject": "after",
                                                "text": "x"})
        assert answer.status_code == 202, answer.text
    wait_until(lambda: len(sink.messages) == 1, timeout=30, message="delivered, not held")
    assert ui.count("status = 'held'") == 0


def test_credentials_are_tried_stored_and_cleared(start_ui: StartUi, page: Page,
                                                  auth_relay: ScriptedServer) -> None:
    ui = start_ui(relays=[{"name": "default", "host": "127.0.0.1", "port": auth_relay.port,
                           "security": "none", "username": "mailer",
                           "password": "config-pass-1"}])
    ui.sign_in(page, "admin")
    page.goto(f"{ui.url}/relays")
    login = page.locator(".relay dl")
    expect(login).to_contain_text("password as mailer (config)")

    set_credentials(page, "", "")  # an empty form: told what to do here, not the API
    problem = page.locator("#problem-default")
    expect(problem).to_contain_text("Nothing stored: the form was empty.")
    expect(problem).to_contain_text("use Clear stored credentials")
    assert "/v1/" not in problem.inner_text()
    assert axe_violations(page) == []

    set_credentials(page, "mailer", "wrong-pass")  # refused: the relay's answer, one line
    expect(problem).to_contain_text("refused the login (535")
    expect(problem).to_contain_text("nothing stored")
    expect(login).to_contain_text("(config)")
    expect(page.get_by_role("link", name="Clear stored credentials…")).to_have_count(0)

    set_credentials(page, *ACCOUNT)
    expect(page.locator("#notice")).to_contain_text("Credentials of default tried (the relay "
                                                    "accepted the login) and stored")
    expect(login).to_contain_text("password as mailer (stored)")
    assert any(c.authenticated_as == "mailer" for c in auth_relay.connections)

    page.get_by_role("link", name="Clear stored credentials…").click()
    confirm = page.locator("#confirm-clear-default")
    expect(confirm).to_contain_text("Clear the credentials stored for default?")
    assert axe_violations(page) == []
    page.get_by_role("link", name="No, keep them").click()
    expect(login).to_contain_text("(stored)")  # "No" did nothing
    page.get_by_role("link", name="Clear stored credentials…").click()
    page.get_by_role("button", name="Yes, clear the credentials of default").click()
    expect(page.locator("#notice")).to_contain_text("Stored credentials of default cleared; "
                                                    "the config file's apply again")
    expect(login).to_contain_text("password as mailer (config)")


def test_only_an_admin_may_clear_credentials(start_ui: StartUi, page: Page,
                                             auth_relay: ScriptedServer) -> None:
    ui = start_ui(relays=[{"name": "default", "host": "127.0.0.1", "port": auth_relay.port,
                           "security": "none", "username": "mailer",
                           "password": "config-pass-1"}])
    ui.sign_in(page, "admin")
    page.goto(f"{ui.url}/relays")
    set_credentials(page, *ACCOUNT)
    expect(page.locator("#notice")).to_contain_text("stored")
    page.get_by_role("button", name="Sign out").click()

    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/relays?clear=default")
    expect(page.get_by_role("link", name="Clear stored credentials…")).to_have_count(0)
    expect(page.locator("#confirm-clear-default")).to_have_count(0)
    post_form(page, "/ui/relays/default/credentials/clear", {})
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.goto(f"{ui.url}/relays")
    expect(page.locator(".relay dl")).to_contain_text("(stored)")
