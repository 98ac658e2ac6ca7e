"""Each recipient box speaks for itself: an invalid entry in Bcc is explained as Bcc's
(not "to[0]"), by the chip and by the server; the suggestion list is driven by ArrowDown
and ArrowUp, and the highlighted option is the input's aria-activedescendant, so a
screen reader announces it (found by a stranger pass)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.ui.support import Ui
from tests.ui.test_compose import add_chip, open_compose

# One backend (tests/ui/conftest.py): the form and its script cannot differ by backend.
BACKENDS = ("sqlite",)


def test_an_invalid_bcc_entry_is_named_as_bcc(ui: Ui, page: Page) -> None:
    open_compose(ui, page)
    add_chip(page, "bcc", "Åsa Öberg")
    add_chip(page, "cc", "bad@@example.test")
    bcc = page.locator('.chips[data-field="bcc"] .chip[data-entry="Åsa Öberg"]')
    expect(bcc).to_have_class("chip invalid")
    expect(bcc.locator(".why")).to_contain_text("invalid: Bcc: 'Åsa Öberg' is not an email")
    cc = page.locator('.chips[data-field="cc"] .chip[data-entry="bad@@example.test"]')
    expect(cc.locator(".why")).to_contain_text("invalid: Cc: 'bad@@example.test'")
    errors = page.locator("#compose-errors")
    expect(errors).to_contain_text("Bcc:")
    expect(errors).not_to_contain_text("to[0]")
    expect(errors).not_to_contain_text("recipient:")
    # Past the page (a form posted as typed), the server names the Bcc field too.
    page.evaluate("""() => { const f = document.getElementById('compose');
        f.querySelectorAll('.chip').forEach(c => c.remove());
        for (const [k, v] of [['to', 'ok@example.test'], ['bcc', 'Åsa Öberg']]) {
          const i = document.createElement('input'); i.type = 'hidden'; i.name = k;
          i.value = v; f.appendChild(i); }
        HTMLFormElement.prototype.submit.call(f); }""")
    expect(page.locator("#server-error")).to_contain_text("bcc[0]")
    expect(page.locator("#server-error")).not_to_contain_text("to[0]")
    assert ui.count() == 0


def test_arrow_keys_move_through_suggestions_and_are_announced(ui: Ui, page: Page) -> None:
    with ui.api() as api:
        for name in ("Anders", "Annika", "Antje"):
            answer = api.post("/v1/contacts", json={"name": name,
                                                    "emails": [f"{name.lower()}@example.test"]})
            assert answer.status_code == 201, answer.text
    open_compose(ui, page)
    box = page.locator("#to-input")
    box.type("An")
    options = page.locator("#to-suggest li")
    expect(options).to_have_count(3)
    assert box.get_attribute("aria-activedescendant") is None

    def active() -> str:
        id = box.get_attribute("aria-activedescendant")
        assert id, "no aria-activedescendant"
        expect(page.locator(f"#{id}")).to_have_attribute("aria-selected", "true")
        assert page.locator('#to-suggest li[aria-selected="true"]').count() == 1
        return id

    box.press("ArrowDown")
    assert active() == "to-opt-0"
    box.press("ArrowDown")
    assert active() == "to-opt-1"
    box.press("ArrowUp")
    assert active() == "to-opt-0"
    box.press("ArrowUp")  # from the first, round to the last
    assert active() == "to-opt-2"
    chosen = page.locator("#to-opt-2").inner_text()
    box.press("Enter")
    expect(page.locator("#to-suggest")).to_be_hidden()
    assert box.get_attribute("aria-activedescendant") is None  # the list is closed
    chip = page.locator(".chips[data-field='to'] .chip")
    expect(chip).to_have_count(1)
    assert chip.get_attribute("data-entry") == chosen


def test_bcc_chip_added_by_keyboard_is_checked_as_bcc(ui: Ui, page: Page) -> None:
    """A valid address in Bcc stays valid (the box's field travels with the check)."""
    open_compose(ui, page)
    add_chip(page, "bcc", "audit@example.test")
    expect(page.locator('.chips[data-field="bcc"] .chip')).to_have_class("chip")
