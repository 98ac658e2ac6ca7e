"""A message's detail page, as a stranger pass read it: the From header as the message has
it (display name included) with the envelope sender beside it only when that differs; and
the transcript of a message sent on a session that had already delivered another, whose
own lines are timed from this message's first line, not from the session's start."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.processes import wait_until
from tests.smtpd import ScriptedServer
from tests.ui.conftest import StartUi
from tests.ui.support import Ui

# One backend (tests/ui/conftest.py): how the page shows a stored message cannot differ by it.
BACKENDS = ("sqlite",)


def submit(ui: Ui, subject: str, sender: str = "Shop Team <shop@example.test>") -> str:
    with ui.api() as api:
        answer = api.post("/v1/messages", json={"from": sender, "to": ["ann@example.test"],
                                                "subject": subject, "text": "hi"})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_a_reused_session_times_this_message_from_its_own_first_line(
        start_ui: StartUi, page: Page, sink: ScriptedServer) -> None:
    # Sessions idle for long enough that the second message surely reuses the first's.
    ui = start_ui(delivery={"idle_timeout": "10m"})
    first = submit(ui, "first")
    wait_until(lambda: ui.count("status = 'sent'") == 1, timeout=30, message="first sent")
    second = submit(ui, "second")
    wait_until(lambda: ui.count("status = 'sent'") == 2, timeout=30, message="second sent")
    assert [m.connection for m in sink.messages] == [0, 0]  # one session carried both

    ui.sign_in(page, "vic")
    page.goto(f"{ui.url}/messages/{second}")
    attempt = page.get_by_role("region", name="Attempt 1")
    setup = attempt.locator("pre.transcript-setup")
    own = attempt.locator("pre.transcript")
    expect(setup).to_contain_text("EHLO")
    expect(setup).not_to_contain_text("MAIL FROM")
    expect(attempt).to_contain_text("Connection set-up (sent once for every message on this "
                                    "connection; times from when the connection opened)")
    expect(attempt).to_contain_text(
        "This message (times from its first line, ")
    expect(attempt).to_contain_text(" s after the connection opened):")
    lines = own.inner_text().splitlines()
    assert lines[0] == "+0.000s C: RSET"  # the reused session's reset opens this message
    assert "EHLO" not in own.inner_text() and "MAIL FROM:<shop@example.test>" in lines[2]
    offsets = [float(line.split("s ", 1)[0][1:]) for line in lines]
    assert offsets == sorted(offsets)

    page.goto(f"{ui.url}/messages/{first}")  # a fresh session: its message starts at zero too
    own = page.get_by_role("region", name="Attempt 1").locator("pre.transcript")
    expect(own).to_contain_text("+0.000s C: MAIL FROM:<shop@example.test>")


def test_from_shows_the_header_and_the_envelope_sender_only_when_it_differs(
        start_ui: StartUi, page: Page, sink: ScriptedServer) -> None:
    ui = start_ui()
    named = submit(ui, "named")
    wait_until(lambda: ui.count("status = 'sent'") == 1, timeout=30, message="sent")
    ui.sign_in(page, "vic")
    page.goto(f"{ui.url}/messages/{named}")
    expect(page.locator("#from-header")).to_have_text("Shop Team <shop@example.test>")
    expect(page.locator("#envelope-sender")).to_have_count(0)  # it left as shop@example.test
    assert sink.messages[0].mail_from == "shop@example.test"


def test_a_verp_return_path_is_shown_as_the_envelope_sender(
        start_ui: StartUi, page: Page, sink: ScriptedServer) -> None:
    ui = start_ui(bounces={"domain": "bounces.example.test"})
    id = submit(ui, "with a return path")
    wait_until(lambda: len(sink.messages) == 1, timeout=30, message="delivered")
    ui.sign_in(page, "vic")
    page.goto(f"{ui.url}/messages/{id}")
    expect(page.locator("#from-header")).to_have_text("Shop Team <shop@example.test>")
    expect(page.locator("#envelope-sender")).to_have_text(sink.messages[0].mail_from)
    expect(page.get_by_text("Envelope sender (Return-Path)", exact=True)).to_be_visible()
    assert sink.messages[0].mail_from.startswith(f"bounces+{id}.")
