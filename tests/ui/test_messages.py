"""Messages in a real Chromium: the dashboard follows a batch of 200 without a reload,
a 550 5.1.1 shows the guidance, resending a delivered message asks first and then makes
exactly one new message, bulk retry of 50 deferred messages once the relay is back."""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from tests.e2e.support import submit_many, wait_all_sent
from tests.processes import wait_until
from tests.smtpd import ScriptedServer, delay, reply
from tests.ui.conftest import StartUi
from tests.ui.support import Ui, screenshot


def submit(ui: Ui, to: str, subject: str = "hello") -> str:
    with ui.api() as api:
        answer = api.post("/v1/messages", json={"from": "app@example.test", "to": to,
                                                "subject": subject, "text": "hi"})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def status_of(ui: Ui, id: str) -> str:
    with ui.api() as api:
        return str(api.get(f"/v1/messages/{id}").json()["status"])


def tile(page: Page, status: str) -> int:
    return int(page.locator(f'#queue-depth [data-status="{status}"]').inner_text())


def test_the_dashboard_follows_a_batch_of_200_without_a_reload(
        ui: Ui, page: Page, sink: ScriptedServer) -> None:
    sink.set_script(delay("DATA", 0.1))  # slow enough to be seen in flight
    ui.sign_in(page, "vic")
    expect(page.locator('#chart-totals [data-series="sent"]')).to_have_text("0")
    page.evaluate("window.__notReloaded = true")
    submit_many(ui.process, 200, threads=4)
    waiting = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        waiting.add(sum(tile(page, s) for s in ("queued", "sending", "deferred")))
        if page.locator('#chart-totals [data-series="sent"]').inner_text() == "200":
            break
        time.sleep(0.3)
    expect(page.locator('#chart-totals [data-series="sent"]')).to_have_text("200")
    expect(page.locator('#queue-depth [data-status="sent"]')).to_have_text("200")
    expect(page.locator('#chart-day-totals [data-series="sent"]')).to_have_text("200")
    assert page.locator("#chart-day rect.sent").count() >= 1  # the last day, per hour
    assert max(waiting) > 0  # the depth was seen while the batch was under way ...
    assert page.evaluate("window.__notReloaded") is True  # ... by the same page
    assert page.locator("#chart rect.sent").count() >= 1
    # Tiles count messages, charts recipients: a stranger pass saw "67 sent" on a tile
    # and "sent 109" on the chart, under the same word.
    expect(page.locator("#depth-h")).to_have_text("Queue (messages)")
    expect(page.locator("#chart-h")).to_contain_text("(recipients: a message to 40 counts 40)")
    screenshot(page, "dashboard-batch")


def test_a_550_5_1_1_shows_the_guidance(start_ui: StartUi, sink: ScriptedServer,
                                        page: Page) -> None:
    ui = start_ui()
    sink.set_script(reply("RCPT", "550 5.1.1 No such user here", recipient="nobody@example.test"))
    id = submit(ui, "nobody@example.test", "to nobody")
    wait_until(lambda: status_of(ui, id) == "failed", timeout=30, message="failed")
    with ui.api() as api:
        guidance = api.get(f"/v1/messages/{id}").json()["recipients"][0]["guidance_detail"]
    ui.sign_in(page, "vic")
    page.get_by_role("link", name="Messages").click()
    page.get_by_role("link", name="to nobody").click()
    row = page.locator("#recipients tbody tr").first
    expect(row).to_contain_text("550 5.1.1 No such user here")
    expect(row.locator(".g-title")).to_have_text(guidance["title"])
    expect(row.locator(".g-next")).to_have_text(guidance["next_step"])
    expect(row).to_contain_text(guidance["explanation"])
    expect(page.locator("#timeline")).to_contain_text("failed")
    expect(page.locator("pre.transcript").first).to_contain_text("550 5.1.1")
    screenshot(page, "message")


def test_resending_a_delivered_message_asks_then_makes_one(ui: Ui, page: Page,
                                                           sink: ScriptedServer) -> None:
    id = submit(ui, "twice@example.test", "once is enough")
    wait_until(lambda: status_of(ui, id) == "sent", timeout=30, message="sent")
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/messages/{id}")
    page.get_by_role("button", name="Resend").click()
    expect(page.locator("#confirm-resend")).to_contain_text("Already delivered")
    assert ui.count() == 1  # nothing yet
    page.get_by_role("button", name="Yes, send it again").dblclick()
    expect(page.locator("#notice")).to_contain_text("Resent as a new message")
    time.sleep(1)
    assert ui.count() == 2
    assert ui.count(f"resent_from = '{id}'") == 1
    wait_until(lambda: len(sink.messages) == 2, timeout=30, message="the copy delivered")


def test_bulk_retry_of_50_deferred_after_the_relay_is_back(start_ui: StartUi, page: Page,
                                                          sink: ScriptedServer) -> None:
    ui = fifty_deferred_then_relay_back(start_ui, sink)
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/messages?status=deferred")
    expect(page.locator('#message-list input[name="id"]')).to_have_count(50)
    page.get_by_role("button", name="Retry selected").click()  # nothing ticked yet
    expect(page.locator("#notice")).to_have_text("Nothing selected: tick the messages first.")
    assert "status=deferred" in page.url  # the filter kept (a stranger pass saw it reset)
    page.get_by_role("button", name="Select all on this page").click()
    page.get_by_role("button", name="Retry selected").click()
    expect(page.locator("#notice")).to_contain_text("50 of 50 selected message(s) queued")
    assert "status=deferred" in page.url
    wait_all_sent(ui.database_url, 50, timeout=60, what="after the bulk retry")
    screenshot(page, "messages")


def test_the_list_filters_by_subject_recipient_and_status(ui: Ui, page: Page,
                                                          sink: ScriptedServer) -> None:
    sink.set_script(reply("RCPT", "550 5.1.1 No such user", recipient="gone@example.test"))
    for subject, to in [("Invoice March", "ann@example.test"),
                        ("Invoice April", "gone@example.test"), ("Lunch", "ann@example.test")]:
        submit(ui, to, subject)
    wait_until(lambda: ui.count("status IN ('sent', 'failed')") == 3, timeout=30,
               message="all final")
    ui.sign_in(page, "vic")
    page.goto(f"{ui.url}/messages")
    page.get_by_label("Subject contains").fill("invoice")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#message-list tbody tr")
    expect(rows).to_have_count(2)
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Invoice April")
    page.goto(f"{ui.url}/messages?recipient=ann@example.test")
    expect(rows).to_have_count(2)
    expect(page.locator("#message-list")).not_to_contain_text("Invoice April")
    page.goto(f"{ui.url}/messages?since=not-a-date")
    expect(page.get_by_role("alert")).to_contain_text("since: 'not-a-date' is not a date")


def fifty_deferred_then_relay_back(start_ui: StartUi, sink: ScriptedServer) -> Ui:
    """50 messages deferred by a 451 with the next try an hour away; then the relay is
    back, so only an operator's retry sends them soon."""
    ui = start_ui(retry={"first_delay": "1h", "max_delay": "1h", "max_attempts": 20,
                         "max_age": "3d"})
    sink.set_script(reply("RCPT", "451 4.3.0 Try again later"))
    submit_many(ui.process, 50, threads=4)
    wait_until(lambda: ui.count("status = 'deferred'") == 50, timeout=60,
               message="50 deferred")
    sink.set_script()
    return ui


def test_the_list_marks_cc_and_bcc_recipients(ui: Ui, page: Page) -> None:
    with ui.api() as api:
        answer = api.post("/v1/messages", json={
            "from": "app@example.test", "to": "to@example.test", "cc": "cc@example.test",
            "bcc": "hidden@example.test", "subject": "three kinds", "text": "hi"})
    assert answer.status_code == 202, answer.text
    ui.sign_in(page, "vic")
    page.goto(f"{ui.url}/messages?recipient=hidden@example.test")  # found by its Bcc
    expect(page.locator("#message-list thead")).to_contain_text("Recipients")
    expect(page.locator("#message-list tbody td").nth(2)).to_have_text(
        "to@example.test, cc@example.test (cc), hidden@example.test (bcc)")
