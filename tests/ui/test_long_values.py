"""One long value does not break a page: a message to a valid 250-character address with
a 998-character subject (the longest the API takes) leaves the message page and the
list without a sideways scroll of the document at 1280 and 390 px; the list shortens
the subject (all of it in the title, and on the message's page), and its columns keep
room (found by a stranger pass: a 2453 px wide page, subjects squeezed to 130 px, a
subject on ~60 lines)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.processes import wait_until
from tests.ui.support import Ui, screenshot

# One backend (tests/ui/conftest.py): a page's layout cannot differ by backend.
BACKENDS = ("sqlite",)

ADDRESS = "a" * 64 + "@" + ".".join(["b" * 61] * 3)  # 250 characters, valid
SUBJECT = ("Quarterly report " * 60)[:998]
NO_SIDEWAYS_SCROLL = ("() => document.documentElement.scrollWidth"
                      " <= document.documentElement.clientWidth")


def queue_long_message(ui: Ui) -> str:
    assert len(ADDRESS) == 250
    with ui.api() as api:
        answer = api.post("/v1/messages", json={"from": "me@example.test", "to": [ADDRESS],
                                                "subject": SUBJECT, "text": "x"})
        assert answer.status_code == 202, answer.text
        api.post("/v1/messages", json={"from": "me@example.test", "to": ["x@example.test"],
                                       "subject": "A short one", "text": "x"})
        id = str(answer.json()["id"])
        wait_until(lambda: api.get(f"/v1/messages/{id}").json()["status"] == "sent",
                   message="the long message sent (its events and reply on the page)")
    return id


def test_a_250_character_address_and_a_998_character_subject_fit(ui: Ui, page: Page
                                                                  ) -> None:
    id = queue_long_message(ui)
    ui.sign_in(page)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{ui.url}/messages/{id}")
        expect(page.locator("#message-status")).to_have_text("sent")
        assert page.evaluate(NO_SIDEWAYS_SCROLL), f"the message page scrolls sideways at {width}"
        assert page.locator("#message-status").bounding_box()["x"] < width  # type: ignore[index]
        expect(page.locator("#full-subject")).to_have_text(SUBJECT)  # all of it, here
        if width == 1280:  # the address wraps: status, reply and guidance are in view
            box = page.locator("#recipients").locator("xpath=..")
            assert box.evaluate("b => b.scrollWidth <= b.clientWidth")
        page.goto(f"{ui.url}/messages")
        assert page.evaluate(NO_SIDEWAYS_SCROLL), f"the list scrolls sideways at {width}"
        link = page.locator("#message-list td.subject a").filter(has_text="Quarterly")
        assert link.get_attribute("title") == SUBJECT
        assert len(link.inner_text()) <= 100
    screenshot(page, "long-values-list")
    page.set_viewport_size({"width": 1280, "height": 900})
    # At 1280 every column is on the screen, the subject has room and Created one line.
    header = page.locator("#message-list thead th")
    boxes = {header.nth(i).inner_text(): header.nth(i).bounding_box()
             for i in range(header.count())}
    assert all(box["x"] + box["width"] <= 1280 for box in boxes.values()), boxes  # type: ignore[index]
    assert boxes["Subject"]["width"] >= 190, boxes  # type: ignore[index]
    created = page.locator("#message-list tbody tr").first.locator("td").last
    line = page.evaluate("el => parseFloat(getComputedStyle(el).lineHeight)",
                         created.element_handle())
    assert created.bounding_box()["height"] < 2 * line + 16  # type: ignore[index]
    subject_cell = link.locator("xpath=..")
    assert subject_cell.bounding_box()["height"] < 6 * line  # type: ignore[index]
    page.goto(f"{ui.url}/messages/{id}")
    screenshot(page, "long-values-message")
