"""Compose warns before internal mail leaves: with `internal_domains` set, recipients
outside them (typed, or members of a group) are marked on their chip and named on a
confirmation before anything is queued; "Send anyway" then queues one message."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.processes import wait_until
from tests.smtpd import ScriptedServer
from tests.ui.conftest import StartUi
from tests.ui.test_compose import add_chip, open_compose
from tests.ui.test_pages import check

# One backend (tests/ui/conftest.py): the compose form's warning cannot differ by backend.
BACKENDS = ("postgres",)


def test_external_recipients_are_confirmed_before_send(start_ui: StartUi, page: Page,
                                                        sink: ScriptedServer) -> None:
    ui = start_ui(relays=[{"name": "default", "host": "127.0.0.1", "port": sink.port,
                           "security": "none", "internal": True}],
                  internal_domains=["corp.test"])
    with ui.api() as api:
        answer = api.put("/v1/groups/Partners", json={"members": [
            {"address": "pat@partner.test"}, {"address": "kim@corp.test"}]})
        assert answer.status_code == 200, answer.text
    open_compose(ui, page)
    add_chip(page, "to", "lee@corp.test")
    expect(page.locator('.chip[data-entry="lee@corp.test"]')).to_have_class("chip")
    expect(page.locator("#compose-external")).to_be_hidden()  # all internal so far
    add_chip(page, "cc", "Partners")
    expect(page.locator('.chip[data-entry="Partners"]')).to_have_class("chip external")
    expect(page.locator("#compose-external")).to_contain_text("pat@partner.test")
    # Failed twice in CI on PostgreSQL (stops 59 and 60): after the click the page still
    # showed the form, Send enabled, with no confirmation, error or expired-session
    # notice. What the page asked for and logged meanwhile goes into the failure.
    seen: list[str] = []
    page.on("request", lambda r: seen.append(f"request {r.method} {r.url}"))
    page.on("response", lambda r: seen.append(f"response {r.status} {r.url}"))
    page.on("console", lambda m: seen.append(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: seen.append(f"page error: {e}"))
    page.get_by_role("button", name="Send", exact=True).click()
    warning = page.locator("#confirm-external")
    try:
        expect(warning).to_contain_text("outside the internal domains (corp.test): "
                                        "pat@partner.test")
    except AssertionError as missing:
        raise AssertionError(f"{missing}\nafter the click on Send: {seen}") from None
    assert ui.count() == 0  # nothing queued before the confirmation
    check(page, "compose-external")  # axe scan and screenshots of the warning
    page.get_by_role("button", name="Send anyway").click()
    expect(page.locator("#notice")).to_contain_text("Queued")
    wait_until(lambda: sorted(r for m in sink.messages for r in m.rcpt_tos) == [
        "kim@corp.test", "lee@corp.test", "pat@partner.test"], timeout=30,
        message="delivered to all three")
    assert ui.count() == 1


def test_internal_only_mail_is_sent_without_a_question(start_ui: StartUi, page: Page,
                                                      sink: ScriptedServer) -> None:
    ui = start_ui(relays=[{"name": "default", "host": "127.0.0.1", "port": sink.port,
                           "security": "none", "internal": True}],
                  internal_domains=["corp.test"])
    open_compose(ui, page)
    add_chip(page, "to", "lee@corp.test")
    expect(page.locator('.chip[data-entry="lee@corp.test"]')).to_have_class("chip")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#notice")).to_contain_text("Queued")
    assert ui.count() == 1
