"""`outbox import DIR` names the files it does not import, and a directory with nothing
to import is an error (found by a stranger pass: a directory of .json files printed
"queued 0 new, 0 already queued (same Message-ID), 0 refused" and exited 0).
`outbox contacts import DIR` says it reads one file, and which of the directory's
files it could read."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.created import create_database
from tests.processes import write_config
from tests.zygote import run as fork_run

Run = Callable[..., subprocess.CompletedProcess[str]]

EML = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: kept\r\n"
       b"Message-ID: <kept-1@example.test>\r\nDate: Mon, 7 Dec 2026 08:00:00 +0000\r\n\r\nhi\r\n")


@pytest.fixture
def cli(tmp_path: Path) -> Run:
    config = write_config(tmp_path / "outbox.toml", {
        "database": {"url": f"sqlite:///{tmp_path}/outbox.db"},
        "logging": {"file": str(tmp_path / "outbox.log")},
        "relays": [{"name": "default", "host": "127.0.0.1", "port": 2525, "security": "none"}],
        "storage": {"blob_dir": str(tmp_path / "blobs")},
    })

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return fork_run([*args, "--config", str(config)], dict(os.environ), tmp_path)

    create_database(config)  # as serve would: no other command creates it
    return run


def test_a_directory_of_json_files_is_nothing_to_import(cli: Run, tmp_path: Path) -> None:
    run = cli
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.json").write_text("{}")
    (folder / "b.json").write_text("{}")

    result = run("import", str(folder))

    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "skipped a.json: no a.eml beside it (a .json only describes its .eml)",
        "skipped b.json: no b.eml beside it (a .json only describes its .eml)",
        f"error: no .eml file in {folder}: nothing imported (name the directory `outbox "
        "export -o` wrote: it holds <id>.eml and <id>.json pairs)"]


def test_files_beside_the_messages_are_named_as_skipped(cli: Run, tmp_path: Path) -> None:
    run = cli
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "m1.eml").write_bytes(EML)
    (folder / "m1.json").write_text('{"envelope": {"from": "a@example.test", '
                                    '"to": ["b@example.test"]}}')
    (folder / "notes.txt").write_text("exported on Monday")

    result = run("import", str(folder))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("queued 1 new, 0 already queued (same Message-ID), "
                                     "0 refused, 2 other file(s) skipped")
    assert result.stderr.splitlines() == [
        "skipped notes.txt: not an .eml file",
        "skipped sub: a directory (outbox import does not look inside)"]


def test_contacts_import_of_a_directory_names_what_it_could_read(
        cli: Run, tmp_path: Path) -> None:
    run = cli
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / "a.json").write_text("{}")

    empty = run("contacts", "import", str(folder))
    assert empty.returncode == 1
    assert empty.stderr == (f"error: '{folder}' is a directory; contacts import reads one "
                            ".csv or .vcf file (it holds no .csv or .vcf file: nothing to "
                            "import)\n")

    (folder / "people.vcf").write_text("BEGIN:VCARD\nVERSION:3.0\nFN:A\nEMAIL:a@x.test\n"
                                       "END:VCARD\n")
    some = run("contacts", "import", str(folder))
    assert some.returncode == 1
    assert some.stderr.endswith("(import each of its files: people.vcf)\n")
    assert run("contacts", "list").stdout == ""
