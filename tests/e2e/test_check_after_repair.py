"""`outbox check --repair` reports what is left after its repairs, not the repairs it
just made (found by a stranger pass: the message it had just held for a corrupt
attachment was still "repairable with --repair", and so on every later check)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.dbsql import sql
from tests.e2e.mail import ATTACHMENT, submit_with_attachment_and_bcc
from tests.processes import OutboxProcess, base_config, free_port, write_config


def test_a_repair_already_made_is_not_offered_again(tmp_path: Path, database_url: str) -> None:
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}
    config = base_config(tmp_path, database_url, [relay])
    box = OutboxProcess(write_config(tmp_path / "outbox.toml", config), config)
    with_file, _ = submit_with_attachment_and_bcc(box.config)
    sha = hashlib.sha256(ATTACHMENT).hexdigest()
    blob = Path(box.config["storage"]["blob_dir"]) / sha[:2] / sha[2:4] / sha
    blob.write_bytes(b"X" * len(ATTACHMENT))  # corrupt: same size, other bytes

    before = box.cli("check")
    assert before.returncode == 1, before.stderr
    assert "1 problem(s) found; 1 can be repaired with --repair" in before.stdout

    repaired = box.cli("check", "--repair")
    assert repaired.returncode == 1, repaired.stderr  # the file is still corrupt
    assert f"repaired: held 1 message(s) whose attachment is missing or corrupt: {with_file}" \
        in repaired.stdout
    left = [line for line in repaired.stdout.splitlines() if line.startswith("blob_missing")]
    assert len(left) == 1, repaired.stdout
    assert "--repair" not in left[0] and "(fix by hand)" in left[0], left[0]
    assert "it is held until then" in left[0]
    assert repaired.stdout.splitlines()[-1] == (
        "1 problem(s) remain; fix each by hand as its line says")
    assert sql(database_url, "SELECT id, status FROM messages") == [(with_file, "held")]

    later = box.cli("check")
    assert later.returncode == 1, later.stderr
    assert "can be repaired" not in later.stdout and "repairable" not in later.stdout
    assert later.stdout.splitlines()[-1] == "1 problem(s) found; fix each by hand as its line says"
    again = box.cli("check", "--repair")
    assert "repaired:" not in again.stdout, again.stdout
