"""Message detail's .eml download (the raw MIME, Bcc never in it) and bulk actions on
everything matching the list's filter, with the count named before anything is done."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.e2e.support import wait_all_sent
from tests.processes import TLS, wait_until
from tests.smtpd import ScriptedServer, closed_port, reply
from tests.ui.conftest import StartUi
from tests.ui.support import Ui, screenshot
from tests.ui.test_messages import fifty_deferred_then_relay_back, status_of


def test_the_eml_download_is_the_raw_mime_without_bcc(ui: Ui, page: Page,
                                                      tmp_path: Path) -> None:
    with ui.api() as api:
        answer = api.post("/v1/messages", json={
            "from": "app@example.test", "to": ["to@example.test"],
            "bcc": ["hidden@example.test"], "subject": "Quarterly numbers", "text": "hi"})
    assert answer.status_code == 202, answer.text
    id = answer.json()["id"]
    wait_until(lambda: status_of(ui, id) == "sent", timeout=30, message="sent")
    with httpx.Client(base_url=ui.url, verify=TLS) as anonymous:  # signed out: the sign-in page
        answer = anonymous.get(f"/messages/{id}/eml")
    assert answer.status_code == 303 and "/ui/login" in answer.headers["location"]
    ui.sign_in(page, "vic")  # a viewer may read it
    page.goto(f"{ui.url}/messages/{id}")
    with page.expect_download() as started:
        page.get_by_role("link", name="Download .eml").click()
    download = started.value
    assert download.suggested_filename == f"{id}.eml"
    saved = tmp_path / "message.eml"
    download.save_as(saved)
    raw = saved.read_bytes()
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["Subject"] == "Quarterly numbers"
    assert parsed["To"] == "to@example.test"
    assert parsed["Bcc"] is None and b"hidden@example.test" not in raw
    with ui.api() as api:
        message_id = api.get(f"/v1/messages/{id}").json()["message_id"]
    assert parsed["Message-ID"].strip("<>") == message_id.strip("<>")


def test_bulk_retry_of_everything_matching_the_filter(start_ui: StartUi, page: Page,
                                                      sink: ScriptedServer) -> None:
    ui = fifty_deferred_then_relay_back(start_ui, sink)
    ui.sign_in(page, "vic")  # a viewer sees no bulk action and is refused one
    page.goto(f"{ui.url}/messages?status=deferred")
    expect(page.get_by_role("button", name="Retry all matching…")).to_have_count(0)
    page.goto(f"{ui.url}/messages/matching?action=retry&status=deferred")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/messages?status=deferred")
    expect(page.locator("#matching-count")).to_have_text("50 message(s) match this filter.")
    page.get_by_label("Subject contains").fill("bulk")  # a filter the counts cannot tell
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#matching-count")).to_contain_text("shown before you confirm")
    page.get_by_role("button", name="Retry all matching…").click()
    expect(page.locator("#confirm-bulk")).to_contain_text("Retry all 50 message(s)")
    expect(page.locator("#confirm-bulk")).to_contain_text("status = deferred, q = bulk")
    screenshot(page, "bulk-confirm")
    assert ui.count("status = 'deferred'") == 50  # nothing done before the confirmation
    page.get_by_role("button", name="Yes, retry all 50").click()
    expect(page.locator("#notice")).to_contain_text("50 of 50 matching message(s) queued "
                                                    "for another try")
    wait_all_sent(ui.database_url, 50, timeout=60, what="after the bulk retry by filter")
    wait_until(lambda: len(sink.messages) == 50, timeout=30, message="50 at the sink")
    assert len(sink.messages) == 50


def test_cancel_all_matching_a_recipient_leaves_the_rest(start_ui: StartUi, page: Page,
                                                         sink: ScriptedServer) -> None:
    ui = start_ui(retry={"first_delay": "1h", "max_delay": "1h", "max_attempts": 20,
                         "max_age": "3d"})
    sink.set_script(reply("RCPT", "451 4.3.0 Try again later"))
    with ui.api() as api:
        for n, to in enumerate(["a@example.test"] * 3 + ["b@example.test"] * 2):
            assert api.post("/v1/messages", json={"from": "app@example.test", "to": to,
                                                  "subject": f"m{n}", "text": "x"}
                            ).status_code == 202
    wait_until(lambda: ui.count("status = 'deferred'") == 5, timeout=60,
               message="5 deferred")
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/messages?recipient=a@example.test")
    page.get_by_role("button", name="Cancel all matching…").click()
    expect(page.locator("#confirm-bulk")).to_contain_text("Cancel all 3 message(s)")
    page.get_by_role("link", name="No, go back").click()
    expect(page.locator("#message-list tbody tr")).to_have_count(3)
    assert ui.count("status = 'cancelled'") == 0  # "No" did nothing
    page.get_by_role("button", name="Cancel all matching…").click()
    page.get_by_role("button", name="Yes, cancel all 3").click()
    expect(page.locator("#notice")).to_contain_text("3 of 3 matching message(s) cancelled")
    assert ui.count("status = 'cancelled'") == 3
    assert ui.count("status = 'deferred'") == 2


def test_a_retry_while_its_relay_backs_off_says_when_it_goes(start_ui: StartUi,
                                                            page: Page) -> None:
    """A stranger pass clicked Retry now on mail of a relay that was down: "Queued for
    another try now.", then deferred again at once with the next try minutes away."""
    ui = start_ui(relays=[{"name": "default", "host": "127.0.0.1", "port": closed_port(),
                           "security": "none"}])
    with ui.api() as api:
        answer = api.post("/v1/messages", json={"from": "app@example.test",
                                                "to": "to@example.test", "text": "hi"})
    id = answer.json()["id"]
    wait_until(lambda: status_of(ui, id) == "deferred", timeout=30, message="deferred")
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/messages/{id}")
    page.get_by_role("button", name="Retry now").click()
    expect(page.locator("#notice")).to_contain_text(
        "Queued for another try when relay default ends its back-off, at ")
    expect(page.locator("#notice")).to_contain_text("after 1 failure(s): ")
    expect(page.locator("#notice")).to_contain_text("Connection refused")
