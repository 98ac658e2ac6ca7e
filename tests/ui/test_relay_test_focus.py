""""Test connection" on the relays page, by keyboard: the result is swapped in beside the
button, announced by its live region, and the keyboard focus stays on the button (a
stranger pass found it dropped to the page's start after the swap)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.ui.support import Ui

# One backend (tests/ui/conftest.py): focus handling cannot differ by backend.
BACKENDS = ("sqlite",)


def test_the_focus_stays_on_the_button_after_the_result_is_shown(ui: Ui, page: Page) -> None:
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/relays")
    button = page.get_by_role("button", name="Test connection")
    button.focus()
    page.keyboard.press("Enter")
    result = page.locator("#test-default")
    expect(result.get_by_role("status")).to_contain_text("connected (no login configured)")
    assert result.get_attribute("aria-live") == "polite"
    expect(button).to_be_focused()
    page.keyboard.press("Enter")  # and a second test from where the focus is
    expect(result.locator("pre.transcript")).to_contain_text("EHLO")
    expect(button).to_be_focused()
