"""The address book's forms keep a repeated member or address once, as the API does
(tests/api/test_book_repeats.py): the same service call. One backend: a form cannot
differ by backend."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.ui.support import Ui

BACKENDS = ("sqlite",)


def test_a_group_and_an_alias_typed_with_repeats_keep_each_once(ui: Ui, page: Page) -> None:
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/groups")
    form = page.locator("#new-group")
    form.get_by_label("Name").fill("Crew")
    form.get_by_label("Members (one a line)").fill(
        "ann@example.test\nbob@example.test\nANN@Example.Test")
    form.get_by_role("button", name="Save group").click()
    expect(page.locator("#notice")).to_contain_text("Group Crew saved with 2 member(s)")
    expect(page.locator('section[data-group="Crew"] > ul.members li')).to_have_text(
        ["ann@example.test", "bob@example.test"])

    alias = page.locator("#new-alias")
    alias.get_by_label("Name").fill("desk")
    alias.get_by_label("Sends to (addresses, one a line)").fill(
        "Desk <desk@example.test>\ndesk@EXAMPLE.test")
    alias.get_by_role("button", name="Save alias").click()
    expect(page.locator("#notice")).to_contain_text("Alias desk saved with 1 address(es)")
    expect(page.locator('#alias-list tr[data-alias="desk"]')).to_contain_text(
        "Desk <desk@example.test>")
    expect(page.locator('#alias-list tr[data-alias="desk"]')).not_to_contain_text(
        "desk@EXAMPLE.test")
