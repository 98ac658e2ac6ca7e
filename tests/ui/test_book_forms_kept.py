"""A group or alias the address book refuses comes back as typed, in the form it was
typed in, with the reason (found by a stranger pass: a new group with the member "Åsa
Öberg" and no address emptied its name, members and description)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.ui.support import Ui
from tests.ui.test_compose import address_book

# One backend (tests/ui/conftest.py): the forms cannot differ by backend.
BACKENDS = ("sqlite",)

MEMBERS = "ann@example.test\nÅsa Öberg"


def test_a_refused_new_group_comes_back_as_typed(ui: Ui, page: Page) -> None:
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/groups")
    form = page.locator("#new-group")
    form.get_by_label("Name").fill("Nordics")
    form.get_by_label("Members (one a line)").fill(MEMBERS)
    form.get_by_label("Description").fill("Everyone in the Nordic offices")
    form.get_by_role("button", name="Save group").click()
    expect(page.locator("#book-error")).to_contain_text("Group Nordics:")
    expect(page.locator("#book-error")).to_contain_text("Åsa Öberg")
    form = page.locator("#new-group")
    expect(form.get_by_label("Name")).to_have_value("Nordics")
    expect(form.get_by_label("Members (one a line)")).to_have_value(MEMBERS)
    expect(form.get_by_label("Description")).to_have_value("Everyone in the Nordic offices")
    # Corrected, it is saved.
    form.get_by_label("Members (one a line)").fill("ann@example.test\nasa@example.test")
    form.get_by_role("button", name="Save group").click()
    expect(page.locator("#notice")).to_contain_text("Group Nordics saved with 2 member(s)")
    expect(page.locator("#new-group").get_by_label("Name")).to_have_value("")


def test_a_refused_edit_of_a_group_comes_back_in_its_own_form(ui: Ui, page: Page) -> None:
    address_book(ui)
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/groups")
    sales = page.locator('section[data-group="Sales"]')
    sales.get_by_text("Edit Sales").click()
    sales.get_by_label("Members (one a line)").fill(MEMBERS)
    sales.get_by_role("button", name="Save Sales").click()
    expect(page.locator("#book-error")).to_contain_text("Group Sales:")
    sales = page.locator('section[data-group="Sales"]')
    expect(sales.get_by_label("Members (one a line)")).to_be_visible()  # open again
    expect(sales.get_by_label("Members (one a line)")).to_have_value(MEMBERS)
    expect(page.locator("#new-group").get_by_label("Name")).to_have_value("")


def test_a_refused_alias_comes_back_as_typed(ui: Ui, page: Page) -> None:
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/groups")
    alias = page.locator("#new-alias")
    alias.get_by_label("Name").fill("billing")
    alias.get_by_label("Sends to (addresses, one a line)").fill("bad@@example.test")
    alias.get_by_role("button", name="Save alias").click()
    expect(page.locator("#book-error")).to_contain_text("Alias billing: targets[0]")
    alias = page.locator("#new-alias")
    expect(alias.get_by_label("Name")).to_have_value("billing")
    expect(alias.get_by_label("Sends to (addresses, one a line)")).to_have_value(
        "bad@@example.test")
