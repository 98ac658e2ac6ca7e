"""Every page of the UI: an axe-core scan (vendored axe.min.js, injected by Playwright)
finds no serious or critical violation, and screenshots at 1280 px and 390 px are
written as test artifacts (tmp/artifacts/ui, or $OUTBOX_TEST_ARTIFACTS)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.processes import wait_until
from tests.smtpd import ScriptedServer, reply
from tests.ui.support import ARTIFACTS, Ui, axe_violations, screenshot
from tests.ui.test_compose import add_chip, address_book

# One backend (tests/ui/conftest.py): accessibility and screenshots of rendered pages cannot
# differ by backend.
BACKENDS = ("sqlite",)


@pytest.mark.long(34)
def test_every_page_passes_axe_and_is_captured(ui: Ui, page: Page,
                                               sink: ScriptedServer) -> None:
    address_book(ui)
    sink.set_script(reply("RCPT", "550 5.1.1 No such user", recipient="gone@example.test"))
    with ui.api() as api:
        id = api.post("/v1/messages", json={"from": "app@example.test",
                                            "to": ["gone@example.test", "ok@example.test"],
                                            "subject": "a page", "text": "hi"}).json()["id"]
    wait_until(lambda: ui.count("status = 'partially_sent'") == 1, timeout=30,
               message="delivered to one of two")

    page.goto(f"{ui.url}/login")
    check(page, "login")
    ui.sign_in(page, "admin")
    with ui.api() as api:
        contact = api.get("/v1/contacts").json()["contacts"][0]["id"]
    for name, path in [*PAGES, ("message", f"/messages/{id}"),
                       ("contact", f"/contacts/{contact}")]:
        page.goto(f"{ui.url}{path}")
        check(page, name)
    page.goto(f"{ui.url}/contacts")
    page.get_by_role("button", name="Find duplicates…").click()
    expect(page.locator("#report-summary")).to_be_visible()
    check(page, "contacts-report")
    page.goto(f"{ui.url}/keys")
    page.get_by_label("Name", exact=True).fill("pages")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_be_visible()
    check(page, "keys-created")
    page.goto(f"{ui.url}/relays")
    # "Test connection" is an htmx POST (CSRF token in its header), answered in place.
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-default")).to_contain_text("connected (no login configured)")
    expect(page.locator("#test-default pre.transcript")).to_contain_text("EHLO")
    check(page, "relay-test")
    page.goto(f"{ui.url}/compose")
    expect(page.locator('#compose[data-ready="true"]')).to_have_count(1)
    add_chip(page, "to", "Sales")
    add_chip(page, "to", "bad@@example.test")
    expect(page.locator(".chip.invalid")).to_have_count(1)
    page.get_by_role("button", name="Show members of Sales").click()
    check(page, "compose")
    page.goto(f"{ui.url}/messages/no-such-message")
    expect(page.get_by_role("heading", name="Not done")).to_be_visible()
    check(page, "error")
    page.goto(f"{ui.url}/no/such/page")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    for name in ("login", "message", "compose", "error", "contact", "contacts-report",
                 "keys-created", *(name for name, _ in PAGES)):
        for width in (1280, 390):
            assert (ARTIFACTS / f"{name}-{width}.png").stat().st_size > 1000


PAGES = [("dashboard", "/"), ("messages", "/messages"), ("relays", "/relays"),
         ("bulk-confirm", "/messages/matching?action=retry&status=partially_sent"),
         ("alerts", "/alerts"), ("keys", "/keys"), ("settings", "/settings"),
         ("contacts", "/contacts"), ("groups", "/groups"), ("directory", "/directory")]


def check(page: Page, name: str) -> None:
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        violations = axe_violations(page)
        assert violations == [], f"{name} at {width} px: {violations}"
    page.set_viewport_size({"width": 1280, "height": 900})
    screenshot(page, name)


def test_pages_load_their_icon_without_a_console_error(ui: Ui, page: Page) -> None:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.goto(f"{ui.url}/login")
    # A page that names no icon has Chromium ask for /favicon.ico: a 404 on every page.
    icon = page.locator('link[rel="icon"]')
    expect(icon).to_have_count(1)
    answer = page.request.get(f"{ui.process.base_url}{icon.get_attribute('href')}")
    assert answer.ok and answer.headers["content-type"].startswith("image/svg+xml")
    ui.sign_in(page, "admin")
    for path in ("/messages", "/relays", "/groups"):
        with page.expect_response(lambda r: "favicon" in r.url) as loaded:
            page.goto(f"{ui.url}{path}")
        assert loaded.value.ok, loaded.value.url
    assert errors == []
