"""Files the compose page refused to attach stay listed, with the reason, when the server
sends the form back with an error (a stranger pass found the notices gone): a name the
page blocks by its extension, a file over the size limit, and a file the server blocks by
its content at Send, which is then left out so that the next Send goes without it."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.processes import wait_until
from tests.smtpd import ScriptedServer
from tests.ui.conftest import StartUi
from tests.ui.test_compose import add_chip, open_compose

# One backend (tests/ui/conftest.py): the compose form cannot differ by backend.
BACKENDS = ("sqlite",)


def windows_executable() -> bytes:
    """'MZ', the PE header's offset at 0x3C, and 'PE\\0\\0' there."""
    head = bytearray(b"MZ" + b"\0" * 0x3E)
    head[0x3C:0x40] = (0x40).to_bytes(4, "little")
    return bytes(head) + b"PE\0\0" + b"\0" * 200


def test_refusal_notices_survive_a_server_error_and_a_blocked_file_is_left_out(
        start_ui: StartUi, page: Page, sink: ScriptedServer, tmp_path: Path) -> None:
    ui = start_ui(limits={"max_attachment_size": "1MB"})
    tool, disguised, notes, big = (tmp_path / "tool.exe", tmp_path / "report.txt",
                                   tmp_path / "notes.txt", tmp_path / "big.pdf")
    tool.write_bytes(windows_executable())
    big.write_bytes(b"%PDF-1.4\n" + b"x" * 1_500_000)
    disguised.write_bytes(windows_executable())
    notes.write_text("kept\n")
    open_compose(ui, page)
    add_chip(page, "to", "files@example.test")
    page.get_by_label("From").fill("")  # the server sends the form back: no From
    page.set_input_files("#files", [str(tool), str(disguised), str(notes), str(big)])
    items = page.locator("#uploads li")
    expect(items.filter(has_text="tool.exe")).to_contain_text(
        "not attached: files ending in .exe are blocked (limits.blocked_extensions)")
    expect(items.locator(".pct").filter(has_text="uploaded")).to_have_count(2)
    page.get_by_role("button", name="Send").click()

    expect(page.locator("#server-error")).to_contain_text("from")
    refused = items.filter(has_text="tool.exe")
    expect(refused).to_contain_text(
        "not attached: files ending in .exe are blocked (limits.blocked_extensions)")
    expect(refused).to_have_class("upload error")
    expect(items.filter(has_text="big.pdf")).to_contain_text(
        "not attached: over the limit of 1,000,000 bytes (limits.max_attachment_size)")
    page.get_by_label("From").fill("me@example.test")
    page.get_by_role("button", name="Send").click()

    expect(page.locator("#server-error")).to_contain_text("'report.txt' is blocked: its "
                                                          "content is a Windows executable")
    expect(items.filter(has_text="report.txt")).to_contain_text("not attached: 'report.txt' "
                                                                "is blocked")
    expect(items.filter(has_text="tool.exe")).to_contain_text("not attached")
    expect(items.filter(has_text="notes.txt")).to_contain_text("100 % uploaded")
    expect(items.filter(has_text="big.pdf")).to_contain_text("not attached")
    page.get_by_role("button", name="Dismiss the notice about tool.exe").click()
    expect(items).to_have_count(3)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#notice")).to_contain_text("Queued")

    wait_until(lambda: sink.messages, timeout=30, message="the message delivered")
    parsed = email.message_from_bytes(sink.messages[0].data, policy=policy.default)
    files = [a.get_filename() for a in parsed.iter_attachments()]
    assert files == ["notes.txt"]
