"""Compose in a real Chromium: chips resolved from groups and aliases ("via group ..."),
expanding to members, one copy per member at the sink; an invalid address blocks Send
and is named; text typed but not yet a chip is sent (or, invalid, blocks Send), with the
page's script or without it; a suggested contact whose name needs quoting is one valid
chip; an empty From comes back as the form; a double click on Send queues one message;
a viewer is refused."""

from __future__ import annotations

import email
from email import policy

from playwright.sync_api import Browser, Page, expect

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


def recipients(ui: Ui, page: Page) -> list[tuple[str, str]]:
    """(kind, address) of the message the page shows, once it is queued."""
    expect(page.locator("#notice")).to_contain_text("Queued")
    with ui.api() as api:
        shown = api.get("/v1/messages/" + page.url.split("/messages/")[1].split("?")[0]).json()
    return sorted((r["kind"], r["address"]) for r in shown["recipients"])


def test_text_typed_but_not_yet_a_chip_is_sent_to(ui: Ui, page: Page) -> None:
    """The tester's steps: a chip in To, an address typed in Bcc, Send pressed at once."""
    open_compose(ui, page)
    add_chip(page, "to", "chip1@example.test")
    expect(page.locator('.chip[data-entry="chip1@example.test"]')).to_have_class("chip")
    page.locator("#bcc-input").click()
    page.keyboard.type("auditor@example.test")
    page.click("#send", delay=120)
    assert recipients(ui, page) == [("bcc", "auditor@example.test"),
                                    ("to", "chip1@example.test")]


def test_text_typed_in_every_box_is_sent_to(ui: Ui, page: Page) -> None:
    """Text left in boxes without a blur (filled by a script or a password manager), and
    no chip at all: each box's text is a recipient."""
    open_compose(ui, page)
    for field in ("to", "cc"):
        page.locator(f"#{field}-input").evaluate(
            "(input, value) => { input.value = value; }", f"{field}1@example.test")
    page.locator("#bcc-input").fill("Ann <b1@example.test>; b2@example.test")
    page.get_by_label("Subject").press("Enter")  # implicit submission: no click, no blur
    assert recipients(ui, page) == [("bcc", "b1@example.test"), ("bcc", "b2@example.test"),
                                    ("cc", "cc1@example.test"), ("to", "to1@example.test")]


def test_invalid_text_typed_but_not_yet_a_chip_blocks_send(ui: Ui, page: Page) -> None:
    open_compose(ui, page)
    add_chip(page, "to", "ok@example.test")
    page.locator("#cc-input").click()
    page.keyboard.type("bad@@example.test")
    page.click("#send", delay=120)
    chip = page.locator('.chip[data-entry="bad@@example.test"]')
    expect(chip).to_have_class("chip invalid")
    expect(chip.locator(".why")).to_contain_text("invalid")
    expect(page.locator("#compose-errors")).to_contain_text("bad@@example.test")
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    expect(page.locator("#server-error")).to_have_count(0)
    assert ui.count() == 0


def test_without_javascript_typed_recipients_are_sent_and_kept(ui: Ui, browser: Browser
                                                               ) -> None:
    """The form without its script: each box is a plain field, and what came back with
    an error is shown and sent again."""
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        ui.sign_in(page, "sally")
        page.goto(f"{ui.url}/compose")
        page.get_by_label("From").fill("not-an-address")
        page.locator("#to-input").fill("to1@example.test, to2@example.test")
        page.locator("#cc-input").fill("cc1@example.test")
        page.get_by_label("Subject").fill("No script")
        page.get_by_label("Text").fill("Body text")
        page.get_by_role("button", name="Send").click()
        expect(page.locator("#server-error")).to_contain_text("field from")
        expect(page.locator(".chips")).to_have_text(
            ["to1@example.test, to2@example.test", "cc1@example.test", ""])
        page.get_by_label("From").fill("me@example.test")
        page.get_by_role("button", name="Send").click()
        assert recipients(ui, page) == [("cc", "cc1@example.test"), ("to", "to1@example.test"),
                                        ("to", "to2@example.test")]
    finally:
        context.close()


def test_a_suggested_contact_whose_name_needs_quotes_is_one_valid_chip(
        ui: Ui, page: Page, sink: ScriptedServer) -> None:
    with ui.api() as api:
        assert api.post("/v1/contacts", json={"name": "Smith, John (Ops)",
                                              "emails": ["john.smith@example.test"]}
                        ).status_code == 201
    open_compose(ui, page)
    page.locator("#to-input").fill("Smi")
    page.get_by_role("option", name="john.smith@example.test").click()
    expect(page.locator(".chip")).to_have_class(["chip"])  # not "chip invalid"
    expect(page.locator(".chip .entry")).to_have_text(
        ['"Smith, John (Ops)" <john.smith@example.test>'])
    page.get_by_role("button", name="Send").click()
    assert recipients(ui, page) == [("to", "john.smith@example.test")]
    wait_until(lambda: sink.messages, timeout=30, message="the message delivered")
    to = email.message_from_bytes(sink.messages[0].data, policy=policy.default)["To"]
    assert [(a.display_name, a.addr_spec) for a in to.addresses] == [
        ("Smith, John (Ops)", "john.smith@example.test")]


def test_an_empty_from_comes_back_as_the_form_with_its_error(ui: Ui, page: Page) -> None:
    open_compose(ui, page)
    page.get_by_label("From").fill("")
    add_chip(page, "to", "kept@example.test")
    expect(page.locator('.chip[data-entry="kept@example.test"]')).to_have_class("chip")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#server-error")).to_contain_text("field from")
    expect(page.get_by_label("Subject")).to_have_value("Hello from the UI")
    expect(page.get_by_label("Text")).to_have_value("Body text")
    expect(page.locator('.chip[data-entry="kept@example.test"]')).to_have_class("chip")
    page.get_by_label("From").fill("me@example.test")
    page.get_by_role("button", name="Send").click()
    assert recipients(ui, page) == [("to", "kept@example.test")]


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


def test_a_suggestion_does_not_open_for_text_already_made_a_chip(ui: Ui, page: Page) -> None:
    """Enter makes a chip before the suggestion's 150 ms delay is over; its answer, come
    later, opened the list anyway, and the list pushed Send down under a click (the
    flaky test_compose_warning.py in CI: the click missed, nothing was sent)."""
    address_book(ui)
    open_compose(ui, page)
    add_chip(page, "cc", "Sales")  # fill and Enter at once
    expect(page.locator('.chip[data-entry="Sales"]')).to_have_count(1)
    # Past the delay and a suggestion's answer (on the old code the list was open by then;
    # now no suggestion is asked for).
    page.wait_for_timeout(1000)
    expect(page.locator("#cc-suggest")).to_be_hidden()
