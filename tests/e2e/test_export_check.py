"""`outbox export` / `outbox import` and `outbox check [--repair]` (issue 14).

Done when: export of 100 messages → import into an empty instance → 100 queued,
re-import → 0 new; `outbox check` names each of six planted faults and `--repair`
fixes the safe ones; a second `check` is clean (after the one fix that needs an
operator: the message whose attachment is gone is cancelled, as `check` says).
"""

from __future__ import annotations

import email
import hashlib
import json
from pathlib import Path
from typing import Any

from tests.dbsql import scalar, sql
from tests.e2e.mail import ATTACHMENT, submit_with_attachment_and_bcc
from tests.e2e.support import fill_queue, status_counts
from tests.processes import OutboxProcess, base_config, free_port, write_config


def nowhere() -> dict[str, Any]:
    return {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}


def instance(directory: Path, url: str) -> OutboxProcess:
    directory.mkdir(exist_ok=True)
    config = base_config(directory, url, [nowhere()])
    return OutboxProcess(write_config(directory / "outbox.toml", config), config)


def test_export_100_import_into_an_empty_instance_then_again_queues_nothing(
        tmp_path: Path, database_url: str) -> None:
    source = instance(tmp_path / "a", f"sqlite:///{tmp_path}/a.db")
    queued = fill_queue(source.config, 99)
    special, special_mid = submit_with_attachment_and_bcc(source.config)
    exported = tmp_path / "exported"
    result = source.cli("export", "--status", "queued", "-o", str(exported))
    assert result.returncode == 0, result.stderr
    assert "exported 100 queued messages" in result.stdout
    assert len(list(exported.glob("*.eml"))) == len(list(exported.glob("*.json"))) == 100
    wire = email.message_from_bytes((exported / f"{special}.eml").read_bytes())
    assert wire["Message-ID"] == special_mid and "Bcc" not in wire
    assert [part.get_payload(decode=True) for part in wire.walk()
            if part.get_filename() == "q.pdf"] == [ATTACHMENT]
    sidecar = json.loads((exported / f"{special}.json").read_text())
    assert sidecar["status"] == "queued" and sidecar["events"][0]["type"] == "queued"
    assert {r["address"] for r in sidecar["recipients"]} == {
        "boss@example.test", "cc@example.test", "audit@example.test"}
    assert sidecar["metadata"] == {"ticket": "T-1"}
    later = source.cli("export", "--status", "queued", "--since", "2999-01-01",
                       "-o", str(tmp_path / "none"))
    assert "exported 0 queued messages" in later.stdout, later.stderr

    target = instance(tmp_path / "b", database_url)
    fill_queue(target.config, 0)  # an empty instance: the schema, no mail
    first = target.cli("import", str(exported))
    assert first.returncode == 0, first.stderr
    assert "queued 100 new, 0 already queued" in first.stdout
    assert status_counts(database_url) == {"queued": 100}
    assert {mid for mid, in sql(database_url, "SELECT message_id FROM messages")} == {
        *queued.values(), special_mid}
    again = target.cli("import", str(exported))
    assert again.returncode == 0, again.stderr
    assert "queued 0 new, 100 already queued" in again.stdout
    assert scalar(database_url, "SELECT count(*) FROM messages") == "100"
    imported = scalar(database_url, f"SELECT id FROM messages WHERE message_id = "
                                    f"'{special_mid}'")
    addresses = {a for a, in sql(database_url, f"SELECT address FROM recipients WHERE "
                                               f"message_id = '{imported}'")}
    assert addresses == {"boss@example.test", "cc@example.test", "audit@example.test"}


def test_check_names_six_planted_faults_and_repair_fixes_the_safe_ones(
        tmp_path: Path, database_url: str) -> None:
    box = instance(tmp_path / "box", database_url)
    ids = sorted(fill_queue(box.config, 5))
    with_file, _ = submit_with_attachment_and_bcc(box.config)
    final, claimed, stamped = ids[:3]
    pg = database_url.startswith("postgresql")
    old = "2000-01-01T00:00:00Z" if pg else "2000-01-01 00:00:00.000000"
    far = "2999-01-01T00:00:00Z" if pg else "2999-01-01 00:00:00.000000"
    blob_dir = Path(box.config["storage"]["blob_dir"])
    sha = hashlib.sha256(ATTACHMENT).hexdigest()
    # 1. a sent message whose recipient is still pending
    sql(database_url, f"UPDATE messages SET status = 'sent', due_at = NULL WHERE id = '{final}'")
    # 2. a claim of a worker that is gone (its lease still runs for centuries)
    sql(database_url, f"UPDATE messages SET status = 'sending', due_at = NULL, claimed_by = "
                      f"'deadhost:1:dead', claim_token = 'x:{claimed}', lease_until = '{far}' "
                      f"WHERE id = '{claimed}'")
    if not pg:  # a dead process leaves its (unlocked) lock file beside the database
        workers = Path(f"{database_url.removeprefix('sqlite:///')}-workers")
        workers.mkdir(exist_ok=True)
        (workers / "deadhost_1_dead.lock").touch()
    # 3. an attachment file no record knows
    orphan = "ab" * 32
    (blob_dir / "ab" / "ab").mkdir(parents=True, exist_ok=True)
    (blob_dir / "ab" / "ab" / orphan).write_bytes(b"left over")
    # 4. a waiting message's attachment corrupted on disk (same size, other bytes)
    (blob_dir / sha[:2] / sha[2:4] / sha).write_bytes(b"X" * len(ATTACHMENT))
    # 5. an event stamped before the one before it
    sql(database_url, f"INSERT INTO events (message_id, at, type, detail) VALUES "
                      f"('{stamped}', '{old}', 'alert', 'planted')")
    # 6. schema drift: an index of the schema dropped
    sql(database_url, "DROP INDEX ix_events_message_id_id")

    found = box.cli("check")
    assert found.returncode == 1, found.stderr
    expected = [f"final_with_pending: message {final}", f"dead_claim: message {claimed}",
                f"orphan_blob: blob {orphan}", f"blob_missing: message {with_file}",
                f"events_out_of_order: message {stamped}",
                "schema_drift: index ix_events_message_id_id"]
    for named in expected:
        assert named in found.stdout, (named, found.stdout)
    assert "6 problem(s) found; 6 can be repaired with --repair" in found.stdout
    assert all("fix:" in line for line in found.stdout.splitlines()[:-1])

    repaired = box.cli("check", "--repair")
    assert repaired.returncode == 1, repaired.stderr  # the corrupt attachment remains
    assert repaired.stdout.count("repaired: ") == 6, repaired.stdout
    left = [line for line in repaired.stdout.splitlines() if line.startswith("blob_missing")]
    assert len(left) == 1 and f"outbox queue cancel {with_file}" in left[0]
    statuses = dict(sql(database_url, "SELECT id, status FROM messages"))
    assert statuses[final] == "queued" and statuses[with_file] == "held"
    assert statuses[claimed] in {"queued", "deferred"}
    assert scalar(database_url, f"SELECT count(*) FROM events WHERE message_id = '{claimed}' "
                                "AND type = 'uncertain'") == "1"
    assert not (blob_dir / "ab" / "ab" / orphan).exists()

    cancelled = box.cli("queue", "cancel", with_file)
    assert cancelled.returncode == 0, cancelled.stderr
    clean = box.cli("check")
    assert clean.returncode == 0, clean.stdout
    assert "no problems found" in clean.stdout
