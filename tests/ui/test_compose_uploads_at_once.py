"""Many files chosen at once on the compose page all attach: the page streams at most
[limits] max_uploads_in_flight of them at a time (read from the page) and queues the
rest; the UI's upload route answers an upload over that limit with 429 JSON and
Retry-After, in the words of a UI user, and the page sends such a file again (found by
a stranger pass: seven files at once left one "not attached: 500", an HTML page naming
"this API key")."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
from playwright.sync_api import Page, Response, expect

from tests.processes import wait_until
from tests.smtpd import ScriptedServer
from tests.ui.conftest import StartUi
from tests.ui.test_compose import add_chip, open_compose

# One backend (tests/ui/conftest.py): uploads go to the blob directory, not the store.
BACKENDS = ("sqlite",)

LIMIT = 2  # below the seven files, so that the old page went over it every time


def test_seven_files_chosen_at_once_all_attach_and_are_sent(start_ui: StartUi, page: Page,
                                                            sink: ScriptedServer,
                                                            tmp_path: Path) -> None:
    ui = start_ui(limits={"max_uploads_in_flight": LIMIT})
    statuses: list[int] = []

    def record(response: Response) -> None:
        if response.url.endswith("/ui/uploads"):
            statuses.append(response.status)

    page.on("response", record)
    open_compose(ui, page)
    add_chip(page, "to", "files@example.test")
    # Files on disk, not buffers: Playwright hands a local browser their paths, where 14 MB
    # of buffers cross its pipe as base64 (over 15 s once on a loaded CI machine).
    files = [tmp_path / f"part-{i}.bin" for i in range(7)]
    for file in files:
        file.write_bytes(os.urandom(2_000_000))
    page.set_input_files("#files", files)
    items = page.locator("#uploads li")
    expect(items).to_have_count(7)
    for i in range(7):
        expect(items.nth(i).locator(".pct")).to_have_text("100 % uploaded", timeout=60_000)
    # The page never went over the limit it read: the server refused none of them.
    assert statuses == [201] * 7, statuses
    assert page.locator("#compose").get_attribute("data-max-uploads") == str(LIMIT)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#notice")).to_contain_text("Queued")
    wait_until(lambda: len(sink.messages) == 1, timeout=60, message="the message delivered")
    assert sink.messages[0].data.count(b"part-") >= 7  # every file is in it


def test_an_upload_over_the_limit_is_429_json_with_retry_after(start_ui: StartUi,
                                                               page: Page) -> None:
    ui = start_ui(limits={"max_uploads_in_flight": 1})
    open_compose(ui, page)
    csrf = page.locator('#compose input[name="csrf_token"]').input_value()
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    sent, release = threading.Event(), threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b"x" * 1000
        sent.set()  # the request and its first bytes are on their way
        release.wait(60)  # the first upload stays under way until the test has its answer
        yield b"y" * 1000

    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/octet-stream"}
    with httpx.Client(base_url=ui.process.base_url, cookies=cookies, headers=headers,
                      timeout=60) as first, httpx.Client(base_url=ui.process.base_url,
                                                         cookies=cookies, headers=headers,
                                                         timeout=60) as second:
        held: list[object] = []
        holder = threading.Thread(target=lambda: held.append(
            first.post("/ui/uploads", content=slow_body())))
        holder.start()
        # Not before the server counts it: an upload of the test's own under way when the
        # first one reaches the route would have it refused, and it would hang on in its
        # body, counted by nobody. Its first bytes sent are not enough: the route saw the
        # second before the first in one run of three here (each reads the session first).
        # The blob store opens the first's part file after counting it.
        assert sent.wait(30), "the first upload did not start"
        staging = Path(ui.process.config["storage"]["blob_dir"]) / "tmp"
        wait_until(lambda: any(staging.glob("*.part")), timeout=30,
                   message="the first upload streaming into the blob store")
        answers: list[httpx.Response] = []

        def refused() -> bool:
            assert holder.is_alive(), f"the first upload ended early: {held}"
            answers.append(second.post("/ui/uploads", content=b"z" * 100))
            return answers[-1].status_code != 201

        try:
            wait_until(refused, timeout=30, message="an upload refused while one is under way")
            # The page, refused the same way, waits Retry-After and sends the file again.
            with page.expect_response(lambda r: r.url.endswith("/ui/uploads")
                                      and r.status == 429):
                page.set_input_files("#files", files=[{"name": "later.txt", "buffer": b"later",
                                                       "mimeType": "text/plain"}])
            pct = page.locator("#uploads li .pct")
            expect(pct).to_have_text("waiting")
            release.set()
            expect(pct).to_have_text("100 % uploaded")
        finally:
            release.set()
            holder.join()
    answer = answers[-1]
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["retry-after"] == "1"
    error = answer.json()["error"]
    assert "limits.max_uploads_in_flight" in error
    assert "API key" not in error
