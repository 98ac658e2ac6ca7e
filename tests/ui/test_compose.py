"""Compose in a real Chromium: chips resolved from groups and aliases ("via group ..."),
expanding to members, one copy per member at the sink; an invalid address blocks Send
and is named; a double click on Send queues one message; a viewer is refused."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.dbsql import sql
from tests.processes import wait_until
from tests.smtpd import ScriptedServer
from tests.ui.support import Ui

# One backend (tests/ui/conftest.py): the compose form cannot differ by backend.
BACKENDS = ("sqlite",)

SALES = ["ann@example.test", "bob@example.test", "cho@example.test"]


def address_book(ui: Ui) -> None:
    with ui.api() as api:
        for address in SALES:
            name = address.split("@")[0].title()
            assert api.post("/v1/contacts", json={"name": name, "emails": [address]}
                            ).status_code == 201
        answer = api.put("/v1/groups/Sales", json={"members": [{"address": a} for a in SALES]})
        assert answer.status_code == 200, answer.text
        answer = api.put("/v1/aliases/support", json={"targets": ["desk@example.test"]})
        assert answer.status_code == 200, answer.text


def open_compose(ui: Ui, page: Page, user: str = "sally") -> None:
    ui.sign_in(page, user)
    page.get_by_role("link", name="Compose").click()
    # Enter in a chip box before the page's script is wired up would submit the form.
    expect(page.locator('#compose[data-ready="true"]')).to_have_count(1)
    page.get_by_label("From").fill("me@example.test")
    page.get_by_label("Subject").fill("Hello from the UI")
    page.get_by_label("Text").fill("Body text")


def add_chip(page: Page, field: str, text: str) -> None:
    box = page.locator(f"#{field}-input")
    box.fill(text)
    box.press("Enter")


def test_compose_to_a_group_and_an_alias(ui: Ui, page: Page, sink: ScriptedServer) -> None:
    address_book(ui)
    open_compose(ui, page)
    to = page.locator("#to-input")
    to.fill("Sal")  # autocomplete offers the group
    page.get_by_role("option", name="Sales (group, 3 members)").click()
    add_chip(page, "cc", "support")
    group = page.locator('.chip[data-entry="Sales"]')
    expect(group.locator(".via")).to_have_text("via group Sales")
    expect(page.locator('.chip[data-entry="support"] .via')).to_have_text("via alias support")
    members = group.locator(".members")
    expect(members).to_be_hidden()
    group.get_by_role("button", name="Show members of Sales").click()
    expect(members).to_be_visible()
    expect(members.locator("li")).to_have_text(SALES)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#notice")).to_contain_text("Queued")
    expect(page.get_by_text("via group Sales").first).to_be_visible()  # recipients' provenance

    everyone = {*SALES, "desk@example.test"}
    wait_until(lambda: {r for m in sink.messages for r in m.rcpt_tos} == everyone,
               timeout=30, message="every member received it")
    copies = [r for m in sink.messages for r in m.rcpt_tos]
    assert sorted(copies) == sorted(everyone)  # one copy per member
    assert ui.count() == 1


def test_an_invalid_address_blocks_send_and_is_named(ui: Ui, page: Page) -> None:
    open_compose(ui, page)
    add_chip(page, "to", "ok@example.test")
    add_chip(page, "to", "bad@@example.test")
    chip = page.locator('.chip[data-entry="bad@@example.test"]')
    expect(chip).to_have_class("chip invalid")
    expect(page.locator("#compose-errors")).to_contain_text("bad@@example.test")
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    chip.get_by_role("button", name="Remove bad@@example.test").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    # The server refuses it too, naming the field, if the page is bypassed.
    page.evaluate("""() => { const i = document.createElement('input'); i.type = 'hidden';
        i.name = 'to'; i.value = 'worse@@example.test';
        document.getElementById('compose').appendChild(i);
        HTMLFormElement.prototype.submit.call(document.getElementById('compose')); }""")
    expect(page.locator("#server-error")).to_contain_text("to[1]")
    assert ui.count() == 0


def test_a_double_click_on_send_queues_one_message(ui: Ui, page: Page,
                                                   sink: ScriptedServer) -> None:
    open_compose(ui, page)
    add_chip(page, "to", "once@example.test")
    expect(page.locator('.chip[data-entry="once@example.test"]')).to_have_class("chip")
    page.get_by_role("button", name="Send").dblclick()
    expect(page.locator("#notice")).to_contain_text("Queued")
    # Counted once it has settled, not a second after the first copy: `sent` is recorded
    # only after the sink's 250 (so every copy it got is in), and is never tried again.
    wait_until(lambda: {status for _, _, status in queued(ui)} == {"sent"}, timeout=30,
               message="every queued message sent")
    messages = queued(ui)
    assert len(messages) == 1, f"the double click queued {len(messages)} messages: {messages}"
    ((key, message_id, _),) = messages
    events = [event for (event,) in sql(ui.database_url, "SELECT type FROM events WHERE "
                                        f"message_id = '{key}' ORDER BY id")]
    # A retry after an uncertain attempt (no reply to the final "." within data_timeout
    # on a loaded machine) may send a copy again: the README bounds duplicates by those.
    copies, uncertain = sink.message_ids[message_id], events.count("uncertain")
    assert 1 <= copies <= 1 + uncertain, (
        f"{copies} copies of {message_id} at the sink, {uncertain} uncertain attempt(s); "
        f"events {events}; the sink got {dict(sink.message_ids)}")


def queued(ui: Ui) -> list[tuple[str, ...]]:
    """(id, Message-ID, status) of every message in the queue."""
    return sql(ui.database_url, "SELECT id, message_id, status FROM messages ORDER BY id")


def test_the_same_form_posted_twice_queues_one_message(ui: Ui, page: Page) -> None:
    """The form's idempotency key, without the page's script: two posts of one form."""
    open_compose(ui, page)
    add_chip(page, "to", "twice@example.test")
    expect(page.locator('.chip[data-entry="twice@example.test"]')).to_have_class("chip")
    statuses = page.evaluate("""async () => {
        const data = new URLSearchParams(new FormData(document.getElementById('compose')));
        const post = () => fetch('/ui/compose', {method: 'POST', body: data,
                                                 redirect: 'manual'}).then(r => r.type);
        return await Promise.all([post(), post(), post()]); }""")
    assert statuses == ["opaqueredirect"] * 3
    assert ui.count() == 1


def test_a_viewer_is_refused_a_send(ui: Ui, page: Page) -> None:
    ui.sign_in(page, "vic")
    expect(page.get_by_role("link", name="Compose")).to_have_count(0)
    page.goto(f"{ui.url}/compose")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    # A form posted with the viewer's own valid CSRF token is refused as well.
    page.evaluate("""() => { const token = document.querySelector('input[name=csrf_token]').value;
        const f = document.createElement('form'); f.method = 'post'; f.action = '/ui/compose';
        for (const [k, v] of [['csrf_token', token], ['sender', 'me@example.test'],
                              ['to', 'x@example.test'], ['subject', 's'], ['text', 't']]) {
          const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v;
          f.appendChild(i); }
        document.body.appendChild(f); f.submit(); }""")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    assert ui.count() == 0
