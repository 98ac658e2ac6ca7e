"""The contacts import report names each record by the line of the file it starts on,
says so, and says it as `outbox contacts import` does. A stranger pass found "record 3"
for the first record after the header when its quoted name spanned two lines (csv's
line_num is where a row ends)."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import FilePayload, Page, expect

from tests.ui.support import Ui
from tests.zygote import run as fork_run

# One backend (tests/ui/conftest.py): the store contract tests run the import on both.
BACKENDS = ("sqlite",)

CSV = (b'name,email\n'
       b'"Ann\nLee",ann@example.test\n'  # lines 2 and 3: one record
       b'Bad,not-an-address\n'  # line 4
       b'\n'  # line 5: blank, not a record
       b'Ann L,ANN@example.test\n')  # line 6
NOTES = ["line 4: skipped address 'not-an-address': 'not-an-address' is not an email "
         "address (it has no @)",
         "line 4: skipped 'Bad': no valid address",
         "line 6: same person as line 2 (a shared address); merged"]


def test_notes_name_the_line_a_record_starts_on_as_the_cli_does(ui: Ui, page: Page,
                                                                 tmp_path: Path) -> None:
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/contacts")
    page.get_by_label("CSV or vCard file").set_input_files(
        files=[FilePayload(name="people.csv", mimeType="text/csv", buffer=CSV)])
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name="Import of people.csv")).to_be_visible()
    expect(page.locator("#report-notes li")).to_have_text(NOTES)
    expect(page.locator("#report-numbering")).to_contain_text(
        "in a CSV file, “line N” is the line of the file the record starts on (the header is "
        "line 1; a quoted value may span several lines)")

    (tmp_path / "people.csv").write_bytes(CSV)
    done = fork_run(["contacts", "import", str(tmp_path / "people.csv"), "--dry-run",
                     "--config", str(ui.process.config_path)], dict(os.environ), os.getcwd())
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:4] == NOTES
