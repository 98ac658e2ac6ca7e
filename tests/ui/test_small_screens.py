"""The address book's pages at a phone's width (390 px): nothing makes the document
scroll sideways; wide content (the aliases table) scrolls in its own region. A stranger
pass found the Groups page 10 px too wide: its forms' text boxes (40 columns) set the
least width of their cards."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.ui.support import Ui
from tests.ui.test_compose import address_book

# One backend (tests/ui/conftest.py): layout cannot differ by backend.
BACKENDS = ("sqlite",)

LONG = "a.very.long.mailbox.name.without.any.break.in.it@subdomain.example.test"


def test_groups_and_the_other_book_pages_fit_390_px(ui: Ui, page: Page) -> None:
    address_book(ui)
    with ui.api() as api:
        answer = api.put("/v1/groups/Everyone-in-the-regional-sales-organisation",
                         json={"members": [{"address": LONG}]})
        assert answer.status_code == 200, answer.text
    ui.sign_in(page, "sally")  # a sender: the page has its forms
    page.set_viewport_size({"width": 390, "height": 900})
    for path in ("/groups", "/contacts", "/directory"):
        page.goto(f"{ui.url}{path}")
        expect(page.locator("main h1")).to_be_visible()
        if path == "/groups":  # the long name and address are on the page being measured
            expect(page.locator("ul.members li").filter(has_text=LONG)).to_be_visible()
        widths = page.evaluate("() => [document.documentElement.scrollWidth, "
                               "document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"{path} scrolls sideways at 390 px: {widths}"
