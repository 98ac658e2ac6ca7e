"""A compose form sent, then shown again with the browser's Back: changed and sent, it
is a new message (its user edited it to send it); sent unchanged, it gives the message
already queued and says so. Neither answers "use a new Idempotency-Key", which a UI user
cannot do (found by a stranger pass)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.ui.support import Ui
from tests.ui.test_compose import add_chip, open_compose

# One backend (tests/ui/conftest.py): the form cannot differ by backend.
BACKENDS = ("sqlite",)


def subjects(ui: Ui) -> list[str]:
    with ui.api() as api:
        return sorted(m["subject"] for m in api.get("/v1/messages").json()["messages"])


def test_back_change_and_send_is_a_new_message(ui: Ui, page: Page) -> None:
    open_compose(ui, page)
    page.get_by_label("From").fill("")
    add_chip(page, "to", "again@example.test")
    expect(page.locator('.chip[data-entry="again@example.test"]')).to_have_class("chip")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#server-error")).to_contain_text("field from")  # 422
    page.get_by_label("From").fill("me@example.test")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#notice")).to_contain_text("Queued")
    first = page.url.split("/messages/")[1].split("?")[0]

    page.go_back()
    expect(page.locator('#compose[data-ready="true"]')).to_have_count(1)
    page.get_by_label("Subject").fill("Hello again, corrected")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#notice")).to_contain_text("Queued")
    expect(page.get_by_role("heading", name="Hello again, corrected")).to_be_visible()
    assert page.url.split("/messages/")[1].split("?")[0] != first
    assert subjects(ui) == ["Hello again, corrected", "Hello from the UI"]

    # The same form, unchanged, sent once more: the message it already made.
    page.go_back()
    expect(page.locator('#compose[data-ready="true"]')).to_have_count(1)
    expect(page.get_by_label("Subject")).to_have_value("Hello again, corrected")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#notice")).to_have_text(
        "This form was already sent as this message: nothing new was queued.")
    expect(page.get_by_role("heading", name="Hello again, corrected")).to_be_visible()
    assert ui.count() == 2
