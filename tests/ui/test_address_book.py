"""The address book in a real Chromium: search, edit, merge of duplicates (a preview,
then the merge), CSV import with its report, groups and aliases with their members, the
directory page without LDAP; a viewer reads but is refused a change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.slapd import ADMIN_DN, ADMIN_PASSWORD, PEOPLE, Slapd, person, require_ldap_tools
from tests.ui.conftest import StartUi
from tests.ui.support import Ui, post_form, screenshot
from tests.ui.test_compose import SALES, address_book

# One backend (tests/ui/conftest.py): the store contract tests run the book's search, merge
# and import on both; these pages add nothing that differs by backend.
BACKENDS = ("postgres",)

CSV = (b"name,email\n"
       b"Dee,dee@example.test\n"
       b"Dee Dee,DEE@example.test\n"
       b"Bad,not-an-address\n")


def test_contacts_search_edit_merge_and_import(ui: Ui, page: Page) -> None:
    address_book(ui)
    with ui.api() as api:  # a duplicate: another contact with Ann's address
        assert api.post("/v1/contacts", json={"name": "Ann B.", "emails": [
            "ann@example.test", "ann@home.example"]}).status_code == 201
    ui.sign_in(page, "sally")
    page.get_by_role("link", name="Address book").click()
    rows = page.locator("#contact-list tbody tr")
    expect(rows).to_have_count(4)
    page.get_by_label("Name or address starts with").fill("bo")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    page.get_by_role("link", name="Bob").click()
    page.get_by_label("Name").fill("Robert")
    page.get_by_label("Addresses").fill("bob@example.test\nrobert@example.test")
    page.get_by_role("button", name="Save contact").click()
    expect(page.locator("#notice")).to_contain_text("Contact Robert saved")
    expect(page.locator("#contact-list")).to_contain_text("bob@example.test, robert@example.test")

    page.get_by_role("button", name="Find duplicates…").click()
    expect(page.locator("#report-summary")).to_contain_text("Nothing changed yet")
    expect(page.locator('[data-count="merged"]')).to_have_text("1")
    page.get_by_role("link", name="Contacts", exact=True).click()
    expect(rows).to_have_count(4)  # the preview changed nothing
    page.get_by_role("button", name="Find duplicates…").click()
    page.get_by_role("button", name="Yes, merge them").click()
    expect(page.locator("#report-summary")).not_to_contain_text("Nothing changed yet")
    page.get_by_role("link", name="Back to the contacts").click()
    expect(rows).to_have_count(3)
    expect(page.locator("#contact-list")).to_contain_text("ann@home.example")

    page.get_by_label("CSV or vCard file").set_input_files(
        files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": CSV}])
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name="Import of people.csv")).to_be_visible()
    expect(page.locator('[data-count="added"]')).to_have_text("1")
    expect(page.locator('[data-count="merged"]')).to_have_text("1")
    expect(page.locator('[data-count="skipped"]')).to_have_text("1")
    expect(page.locator("#report-notes")).to_contain_text("skipped 'Bad': no valid address")
    expect(page.locator("#report-notes")).to_contain_text("same person as")
    screenshot(page, "import-report")
    page.get_by_role("link", name="Back to the contacts").click()
    expect(rows).to_have_count(4)


def test_groups_aliases_and_the_directory(ui: Ui, page: Page) -> None:
    address_book(ui)
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/groups")
    sales = page.locator('section[data-group="Sales"] > ul.members li')
    expect(sales).to_have_text(SALES)
    expect(page.locator('#alias-list tr[data-alias="support"]')).to_contain_text(
        "desk@example.test")
    form = page.locator("#new-group")
    form.get_by_label("Name").fill("Leads")
    form.get_by_label("Members (one a line)").fill("group:Sales\nboss@example.test")
    form.get_by_role("button", name="Save group").click()
    expect(page.locator("#notice")).to_contain_text("Group Leads saved with 2 member(s)")
    expect(page.locator('section[data-group="Leads"] > ul.members li')).to_have_text(
        ["group Sales", "boss@example.test"])
    alias = page.locator("#new-alias")
    alias.get_by_label("Name").fill("billing")
    alias.get_by_label("Sends to (addresses, one a line)").fill("bad@@example.test")
    alias.get_by_role("button", name="Save alias").click()
    expect(page.locator("#book-error")).to_contain_text("Alias billing: targets[0]")

    page.goto(f"{ui.url}/directory")
    expect(page.locator("#ldap-status")).to_contain_text("not configured")
    expect(page.locator("#last-sync")).to_have_text("never")
    expect(page.get_by_role("button", name="Sync now (LDAP not configured)")).to_be_disabled()


def test_a_group_and_an_alias_named_with_a_slash_are_deleted(ui: Ui, page: Page) -> None:
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/groups")
    form = page.locator("#new-group")
    form.get_by_label("Name").fill("Sp ace/Slash?")
    form.get_by_label("Members (one a line)").fill("x@example.test")
    form.get_by_role("button", name="Save group").click()
    alias = page.locator("#new-alias")
    alias.get_by_label("Name").fill("in/out")
    alias.get_by_label("Sends to (addresses, one a line)").fill("y@example.test")
    alias.get_by_role("button", name="Save alias").click()
    expect(page.locator("#notice")).to_contain_text("Alias in/out saved")

    group = page.locator('section[data-group="Sp ace/Slash?"]')
    group.get_by_text("Edit Sp ace/Slash?").click()
    group.get_by_role("button", name="Delete Sp ace/Slash?").click()
    expect(page.locator("#notice")).to_have_text("Group Sp ace/Slash? deleted.")
    expect(group).to_have_count(0)
    page.get_by_role("button", name="Delete alias in/out").click()
    expect(page.locator("#notice")).to_have_text("Alias in/out deleted.")
    expect(page.locator('#alias-list tr[data-alias="in/out"]')).to_have_count(0)
    with ui.api() as api:
        assert api.get("/v1/groups").json() == [] and api.get("/v1/aliases").json() == []


def test_a_search_past_its_limit_says_only_the_first_matches_are_shown(ui: Ui,
                                                                       page: Page) -> None:
    with ui.api() as api:
        for n in range(51):
            assert api.post("/v1/contacts", json={"name": f"Many {n}", "emails": [
                f"many{n}@example.test"]}).status_code == 201
    ui.sign_in(page, "vic")
    page.goto(f"{ui.url}/contacts?q=many")
    expect(page.locator("#contact-list tbody tr")).to_have_count(50)
    expect(page.locator("#search-capped")).to_have_text(
        "Showing the first 50 matches: narrow the search.")
    page.goto(f"{ui.url}/contacts?q=many1")  # many1@, many10@ to many19@
    expect(page.locator("#contact-list tbody tr")).to_have_count(11)
    expect(page.locator("#search-capped")).to_have_count(0)


def test_a_viewer_reads_the_book_but_cannot_change_it(ui: Ui, page: Page) -> None:
    address_book(ui)
    ui.sign_in(page, "vic")
    page.get_by_role("link", name="Address book").click()
    expect(page.locator("#contact-list tbody tr")).to_have_count(3)
    expect(page.get_by_role("button", name="Find duplicates…")).to_have_count(0)
    page.goto(f"{ui.url}/contacts/new")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.goto(f"{ui.url}/groups")
    post_form(page, "/ui/aliases", {"name": "sneaky", "targets": "x@example.test"})
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    with ui.api() as api:
        assert [a["name"] for a in api.get("/v1/aliases").json()] == ["support"]


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    require_ldap_tools()
    server = Slapd(tmp_path / "slapd").start()
    try:
        yield server
    finally:
        server.stop()


def test_sync_now_reads_a_real_directory(start_ui: StartUi, slapd: Slapd, page: Page) -> None:
    slapd.add(person("ann", "Ann Lee", "ann@corp.test"),
              person("bob", "Bob Stone", "bob@corp.test"))
    ui = start_ui(ldap={"url": slapd.url, "bind_dn": ADMIN_DN,
                        "bind_password": ADMIN_PASSWORD, "base_dn": PEOPLE})
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/directory")
    expect(page.locator("#ldap-status")).to_have_text("configured")
    expect(page.locator("#last-sync")).to_have_text("never")
    assert ADMIN_PASSWORD not in page.content()
    page.get_by_role("button", name="Sync now", exact=True).click()
    expect(page.get_by_role("heading", name="Directory sync (full)")).to_be_visible()
    expect(page.locator('[data-count="added"]')).to_have_text("2")
    page.get_by_role("link", name="Directory (LDAP)").click()
    expect(page.locator("#last-sync")).to_contain_text("UTC")
    page.get_by_role("link", name="Contacts", exact=True).click()
    expect(page.locator("#contact-list")).to_contain_text("Ann Lee")
    expect(page.locator("#contact-list")).to_contain_text("ldap")
