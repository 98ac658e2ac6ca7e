"""A 50 MB attachment uploaded from the compose page (streamed, with a progress bar that
reaches 100 %) arrives at the relay byte-identical; uploads a form comes back with (after
a refusal) are listed again, each removable, and each sent once."""

from __future__ import annotations

import email
import hashlib
import os
from email import policy
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.processes import wait_until
from tests.smtpd import ScriptedServer
from tests.ui.conftest import StartUi
from tests.ui.support import Ui
from tests.ui.test_compose import add_chip, open_compose

# One backend (tests/ui/conftest.py): the upload form and the blob directory, which both
# backends share cannot differ by backend.
BACKENDS = ("sqlite",)

SIZE = 50 * 1000 * 1000


def test_a_50_mb_upload_with_progress_is_delivered_byte_identical(
        start_ui: StartUi, page: Page, sink: ScriptedServer, tmp_path: Path) -> None:
    ui = start_ui(limits={"max_attachment_size": "60MB", "max_message_size": "80MB"},
                  delivery={"data_timeout": "300s", "poll_interval": "100ms"})
    big = tmp_path / "report.bin"
    with big.open("wb") as out:
        for _ in range(SIZE // 1_000_000):
            out.write(os.urandom(1_000_000))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()

    open_compose(ui, page)
    add_chip(page, "to", "big@example.test")
    # Send is disabled while the file uploads. On a quick machine that can be over
    # before a look at the button, so the page itself notes that it happened.
    page.evaluate("""() => {
        const send = document.getElementById('send');
        window.sendWasDisabled = false;
        new MutationObserver(() => { if (send.disabled) window.sendWasDisabled = true; })
            .observe(send, {attributes: true, attributeFilter: ['disabled']});
    }""")
    page.set_input_files("#files", str(big))
    page.wait_for_function("() => window.sendWasDisabled === true", timeout=20_000)
    item = page.locator("#uploads li").first
    expect(item.locator(".pct")).to_have_text("100 % uploaded", timeout=240_000)
    assert item.locator("progress").evaluate("p => p.value") == 100
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#notice")).to_contain_text("Queued")

    wait_until(lambda: len(sink.messages) == 1, timeout=240, interval=0.5,
               message="the 50 MB message delivered")
    parsed = email.message_from_bytes(sink.messages[0].data, policy=policy.default)
    attachment = next(parsed.iter_attachments())  # type: ignore[attr-defined]
    assert attachment.get_filename() == "report.bin"
    content = attachment.get_content()
    assert len(content) == SIZE
    assert hashlib.sha256(content).hexdigest() == digest


def test_a_file_over_the_limit_or_of_a_blocked_type_is_refused_naming_the_rule(
        start_ui: StartUi, page: Page, tmp_path: Path) -> None:
    ui = start_ui(limits={"max_attachment_size": "1MB", "blocked_extensions": [".exe"]})
    big, tool = tmp_path / "big.pdf", tmp_path / "tool.exe"
    big.write_bytes(b"%PDF-1.4\n" + b"x" * 1_500_000)
    tool.write_bytes(b"MZ" + b"\0" * 100)
    open_compose(ui, page)
    page.set_input_files("#files", [str(big), str(tool)])
    items = page.locator("#uploads li")
    expect(items.nth(0)).to_contain_text("limits.max_attachment_size")
    expect(items.nth(1)).to_contain_text("limits.blocked_extensions")
    # Past the page's own check, the server refuses it before storing anything.
    status = page.evaluate("""async () => (await fetch('/ui/uploads', {method: 'POST',
        headers: {'X-CSRF-Token': document.querySelector('input[name=csrf_token]').value},
        body: new Uint8Array(1500000)})).json()""")
    assert "limits.max_attachment_size" in status["error"]


def test_uploads_a_refused_form_carries_are_listed_removable_and_sent_once(
        ui: Ui, page: Page, sink: ScriptedServer, tmp_path: Path) -> None:
    keep, drop = tmp_path / "keep ü.txt", tmp_path / "drop.txt"
    keep.write_text("kept\n")
    drop.write_text("dropped\n")
    open_compose(ui, page)
    page.get_by_label("Text").fill("")  # the server refuses the form: no body
    add_chip(page, "to", "files@example.test")
    page.set_input_files("#files", [str(keep), str(drop)])
    items = page.locator("#uploads li")
    expect(items.locator(".pct")).to_have_text(["100 % uploaded"] * 2)
    shown = items.all_inner_texts()
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#server-error")).to_contain_text("give a body")
    expect(items).to_have_text(shown)  # as before the refusal
    page.get_by_role("button", name="Remove drop.txt").click()
    expect(items).to_have_count(1)
    page.get_by_label("Text").fill("Now with a body")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#notice")).to_contain_text("Queued")

    wait_until(lambda: sink.messages, timeout=30, message="the message delivered")
    parsed = email.message_from_bytes(sink.messages[0].data, policy=policy.default)
    files = [(a.get_filename(), a.get_content())
             for a in parsed.iter_attachments()]  # type: ignore[attr-defined]
    assert files == [("keep ü.txt", "kept\n")]
