"""A session that ends while a message is being written: the compose page says so (not
"invalid: could not be checked", "not attached: 200" or a blank Compose after the
sign-in page, as a stranger pass found), keeps the draft in this tab, gives it back
on the next Compose after the sign-in, and forgets it once it is sent."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect

from tests.ui.support import PASSWORD, Ui
from tests.ui.test_compose import add_chip, open_compose, recipients

# One backend (tests/ui/conftest.py): the form and its script cannot differ by backend.
BACKENDS = ("sqlite",)

EXPIRED = "Your session expired: sign in again (your draft is kept)."


def end_the_session(context: BrowserContext) -> None:
    """As the browser does when the cookie's max-age (the session's) runs out."""
    context.clear_cookies()


def test_an_expired_session_keeps_the_draft_until_it_is_sent(ui: Ui, page: Page,
                                                             context: BrowserContext) -> None:
    open_compose(ui, page)
    add_chip(page, "to", "kept@example.test")
    expect(page.locator('.chip[data-entry="kept@example.test"]')).to_have_class("chip")
    page.get_by_label("Subject").fill("Written before the session ended")
    page.get_by_label("Text").fill("A long text the user must not lose.")
    end_the_session(context)

    add_chip(page, "cc", "later@example.test")  # checked after the end: not "invalid"
    chip = page.locator('.chip[data-entry="later@example.test"]')
    expect(chip.locator(".why")).to_have_text(" — not checked: your session expired")
    expect(chip).not_to_have_class("chip invalid")
    note = page.locator("#compose-session")
    expect(note).to_have_text(EXPIRED)
    page.set_input_files("#files", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                           "buffer": b"some notes"}])
    expect(page.locator("#uploads li .pct")).to_have_text(
        "not attached: your session expired")
    page.get_by_role("button", name="Send").click()
    expect(note).to_have_text(EXPIRED)
    assert page.url.endswith("/ui/compose")  # still the form, as typed
    expect(page.get_by_label("Text")).to_have_value("A long text the user must not lose.")
    assert ui.count() == 0

    note.get_by_role("link", name="sign in again").click()
    page.get_by_label("User name").fill("sally")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Compose")).to_be_visible()
    expect(page.locator("#compose-draft")).to_contain_text("Your draft from before the "
                                                           "sign-in is back")
    expect(page.get_by_label("Subject")).to_have_value("Written before the session ended")
    expect(page.get_by_label("Text")).to_have_value("A long text the user must not lose.")
    expect(page.get_by_label("From")).to_have_value("me@example.test")
    for entry in ("kept@example.test", "later@example.test"):
        expect(page.locator(f'.chip[data-entry="{entry}"]')).to_have_class("chip")
    # What the tab kept holds no file content and nothing secret, only what was typed.
    kept = page.evaluate("() => sessionStorage.getItem('outbox.compose.draft')")
    assert "some notes" not in kept and "csrf" not in kept.lower()

    page.get_by_role("button", name="Send").click()
    assert recipients(ui, page) == [("cc", "later@example.test"), ("to", "kept@example.test")]
    assert ui.count() == 1
    page.get_by_role("link", name="Compose").click()  # sent: the draft is gone
    expect(page.locator('#compose[data-ready="true"]')).to_have_count(1)
    expect(page.get_by_label("Subject")).to_have_value("")
    expect(page.locator("#compose-draft")).to_be_hidden()


def test_a_draft_is_given_back_only_to_its_own_user(ui: Ui, page: Page,
                                                    context: BrowserContext) -> None:
    open_compose(ui, page)
    page.get_by_label("Subject").fill("Sally's draft")
    end_the_session(context)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#compose-session")).to_have_text(EXPIRED)
    ui.sign_in(page, "admin")
    page.get_by_role("link", name="Compose").click()
    expect(page.locator('#compose[data-ready="true"]')).to_have_count(1)
    expect(page.get_by_label("Subject")).to_have_value("")
    expect(page.locator("#compose-draft")).to_be_hidden()


def test_a_kept_draft_names_its_files_and_can_be_discarded(ui: Ui, page: Page,
                                                            context: BrowserContext) -> None:
    open_compose(ui, page)
    page.set_input_files("#files", files=[{"name": "plan.txt", "mimeType": "text/plain",
                                           "buffer": b"the plan"}])
    expect(page.locator("#uploads li .pct")).to_have_text("100 % uploaded")
    end_the_session(context)
    page.get_by_role("button", name="Send").click()
    page.locator("#compose-session").get_by_role("link", name="sign in again").click()
    page.get_by_label("User name").fill("sally")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    note = page.locator("#compose-draft")
    expect(note).to_contain_text("Attach its 1 file(s) again: files are not kept.")
    expect(page.get_by_label("Subject")).to_have_value("Hello from the UI")
    expect(page.locator("#uploads li")).to_have_count(0)
    note.get_by_role("button", name="Discard the draft").click()
    expect(page.locator('#compose[data-ready="true"]')).to_have_count(1)
    expect(page.get_by_label("Subject")).to_have_value("")
    expect(page.locator("#compose-draft")).to_be_hidden()
