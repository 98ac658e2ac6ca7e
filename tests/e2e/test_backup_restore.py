"""`outbox backup` while `outbox serve` delivers, and `outbox restore` (issue 14).

Done when: backup while messages are being delivered → stop, wipe the database and
the blob directory → restore → start → every message not yet sent at backup time is
delivered exactly once more (duplicates at the sink ≤ `uncertain` events), and the
sent ones keep their history; the same from SQLite into PostgreSQL. A truncated or
tampered backup is refused before anything is touched.

The issue's figure is 1,000 messages; these tests use 300 so that the suite stays
under its time budget (each DATA is slowed to 250 ms so that deliveries are still
under way, several of them in flight, when the backup is taken).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.dbsql import scalar, sql
from tests.e2e.support import fill_queue, relay_for, status_counts, submit_many, wait_all_sent
from tests.pg import fresh_database
from tests.processes import OUTBOX, OutboxProcess, base_config, wait_until, write_config
from tests.smtpd import ScriptedServer, delay

TOTAL = 300


def archive_rows(backup: Path, table: str) -> list[dict[str, Any]]:
    with tarfile.open(backup) as tar:
        member = tar.extractfile(f"tables/{table}.jsonl")
        assert member is not None
        return [json.loads(line) for line in member.read().splitlines()]


def wipe(config: dict[str, Any]) -> None:
    url = config["database"]["url"]
    assert url.startswith("sqlite"), url
    path = Path(url.removeprefix("sqlite:///"))
    for leftover in path.parent.glob(f"{path.name}*"):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    shutil.rmtree(config["storage"]["blob_dir"], ignore_errors=True)


def run_backup_restore_cycle(tmp_path: Path, target_url: str | None) -> None:
    source_url = f"sqlite:///{tmp_path}/outbox.db"
    with ScriptedServer(script=[delay("DATA", 0.25)]) as sink:
        config = base_config(tmp_path, source_url, [relay_for(sink)])
        outbox = OutboxProcess(write_config(tmp_path / "outbox.toml", config), config).start()
        submitted = submit_many(outbox, TOTAL)
        wait_until(lambda: len(sink.messages) >= 30, timeout=60, message="30 deliveries")
        backup = tmp_path / "queue.tar"
        made = outbox.cli("backup", "-o", str(backup))
        assert made.returncode == 0, made.stderr
        outbox.stop()
        sink.set_script()  # full speed from here on: the slow part is over
        before_restore = Counter(sink.message_ids)
        wipe(config)

        if target_url is not None:  # moving to PostgreSQL: same config, other database
            config = {**config, "database": {"url": target_url}}
        restored_config = write_config(tmp_path / "restored.toml", config)
        restored = OutboxProcess(restored_config, config)
        result = restored.cli("restore", str(backup))
        assert result.returncode == 0, result.stderr
        url = config["database"]["url"]

        at_backup = {row["id"]: row for row in archive_rows(backup, "messages")}
        assert set(at_backup) == set(submitted)
        in_flight = {id for id, row in at_backup.items() if row["status"] == "sending"}
        sent_then = {id for id, row in at_backup.items() if row["status"] == "sent"}
        assert in_flight, "the backup should catch deliveries in flight"
        assert sent_then, "the backup should come after some deliveries"
        assert f"{len(in_flight)} messages were being sent at backup time" in result.stdout
        restored_statuses = dict(sql(url, "SELECT id, status FROM messages"))
        assert {restored_statuses[id] for id in in_flight} == {"queued"}
        uncertain = {id for id, in sql(url, "SELECT message_id FROM events "
                                            "WHERE type = 'uncertain'")}
        assert uncertain == in_flight

        restored.start()
        wait_all_sent(url, TOTAL, timeout=120, what="after the restore")
        restored.stop()

    after = Counter(sink.message_ids) - before_restore
    for id, message_id in submitted.items():
        if id in sent_then:
            assert after[message_id] == 0, f"{id} was sent before the backup and again"
        else:
            assert after[message_id] >= 1, f"{id} was not delivered after the restore"
    duplicates = sum(n - 1 for n in after.values())
    assert duplicates <= len(uncertain)
    # The history of what was sent before the backup is intact.
    sent_events = Counter(id for id, in sql(url, "SELECT message_id FROM events "
                                                 "WHERE type = 'sent'"))
    for id in sent_then:
        assert sent_events[id] == 1
    backup_events = Counter(row["message_id"] for row in archive_rows(backup, "events"))
    restored_events = Counter(id for id, in sql(url, "SELECT message_id FROM events"))
    assert all(restored_events[id] >= n for id, n in backup_events.items())


def test_backup_during_delivery_then_restore_delivers_the_rest_once(tmp_path: Path) -> None:
    run_backup_restore_cycle(tmp_path, None)


def test_a_sqlite_backup_restores_into_postgresql(tmp_path: Path) -> None:
    with fresh_database() as target:
        run_backup_restore_cycle(tmp_path, target)


def _small_instance(tmp_path: Path, url: str, count: int) -> OutboxProcess:
    config = base_config(tmp_path, url, [relay_for_nowhere()])
    fill_queue(config, count)
    return OutboxProcess(write_config(tmp_path / f"small-{count}.toml", config), config)


def relay_for_nowhere() -> dict[str, Any]:
    return {"name": "default", "host": "127.0.0.1", "port": 9, "security": "none"}


@pytest.mark.parametrize("damage", ["truncated", "tampered", "part_missing"])
def test_a_damaged_backup_is_refused_before_anything_is_touched(tmp_path: Path,
                                                                damage: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    source = _small_instance(tmp_path / "a", f"sqlite:///{tmp_path}/a/outbox.db", 20)
    backup = tmp_path / "good.tar"
    assert source.cli("backup", "-o", str(backup)).returncode == 0
    broken = tmp_path / f"{damage}.tar"
    data = bytearray(backup.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "tampered":  # one byte of a subject inside tables/messages.jsonl
        at = data.index(b'"subject":"n1')
        data[at + 12] ^= 0x01
    else:  # the last part cut off cleanly, the tar still well formed
        with tarfile.open(backup) as tar, tarfile.open(broken, "w") as out:
            for member in tar.getmembers()[:-1]:
                out.addfile(member, tar.extractfile(member))
        data = bytearray(broken.read_bytes())
    broken.write_bytes(bytes(data))

    target_url = f"sqlite:///{tmp_path}/b/outbox.db"
    target = _small_instance(tmp_path / "b", target_url, 5)
    before = sorted(sql(target_url, "SELECT id, status, updated_at FROM messages"))
    result = target.cli("restore", str(broken), "--force")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    expected = {"truncated": "truncated", "tampered": "fails its sha256 check",
                "part_missing": "truncated"}[damage]
    assert expected in lines[0] and "nothing was changed" in lines[0], lines[0]
    assert sorted(sql(target_url, "SELECT id, status, updated_at FROM messages")) == before


def test_restore_refuses_a_database_with_mail_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    source = _small_instance(tmp_path / "a", f"sqlite:///{tmp_path}/a/outbox.db", 7)
    backup = tmp_path / "seven.tar"
    assert source.cli("backup", "-o", str(backup)).returncode == 0
    with fresh_database() as target_url:
        target = _small_instance(tmp_path / "b", target_url, 3)
        refused = target.cli("restore", str(backup))
        assert refused.returncode == 1
        assert "already holds 3 messages" in refused.stderr and "--force" in refused.stderr
        assert scalar(target_url, "SELECT count(*) FROM messages") == "3"
        forced = target.cli("restore", str(backup), "--force")
        assert forced.returncode == 0, forced.stderr
        assert status_counts(target_url) == {"queued": 7}


# What an operator may have added to a new install (no mail yet) before restoring into
# it by mistake: each would be replaced by the backup's.
ADDED_BY_HAND = {
    "contact": "SELECT count(*) FROM contacts",
    "group": "SELECT count(*) FROM address_groups",
    "alias": "SELECT count(*) FROM aliases",
    "webhook": "SELECT count(*) FROM webhook_endpoints",
    "API key": "SELECT count(*) FROM api_keys",
    "UI user": "SELECT count(*) FROM ui_users",
    "suppression": "SELECT count(*) FROM suppressions",
    "relay with stored credentials": "SELECT count(*) FROM relay_auth "
                                     "WHERE credentials IS NOT NULL",
}


def _added_by_hand(url: str) -> dict[str, str]:
    return {what: scalar(url, query) for what, query in ADDED_BY_HAND.items()}


def _cli_with_stdin(outbox: OutboxProcess, *args: str,
                    stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OUTBOX, *args, "--config", str(outbox.config_path)], input=stdin,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **outbox.env})


def _backup_of_two_messages(tmp_path: Path) -> Path:
    (tmp_path / "a").mkdir()
    source = _small_instance(tmp_path / "a", f"sqlite:///{tmp_path}/a/outbox.db", 2)
    backup = tmp_path / "two.tar"
    made = source.cli("backup", "-o", str(backup))
    assert made.returncode == 0, made.stderr
    return backup


def test_restore_refuses_a_database_without_mail_that_holds_other_data(
        tmp_path: Path, database_url: str) -> None:
    """No messages, but a contact, a group, an alias, a webhook, an API key, a UI user,
    a suppression and stored relay credentials: the restore would replace them all, so
    it refuses and names them."""
    backup = _backup_of_two_messages(tmp_path)
    config = base_config(tmp_path, database_url, [relay_for_nowhere()],
                         secrets={"key_file": str(tmp_path / "secret.key")})
    target = OutboxProcess(write_config(tmp_path / "target.toml", config), config)
    (tmp_path / "people.csv").write_text("name,email\nAnn,ann@example.test\n")
    for args in (("contacts", "import", str(tmp_path / "people.csv")),
                 ("contacts", "group", "team", "ann@example.test"),
                 ("contacts", "alias", "ops", "ann@example.test"),
                 ("webhooks", "add", "https://hooks.example.test/outbox", "--events", "sent"),
                 ("keys", "create", "--name", "deploy", "--scopes", "send"),
                 ("suppress", "add", "complained@example.test")):
        done = target.cli(*args)
        assert done.returncode == 0, done.stderr
    for args, secret in ((("users", "create", "--name", "alice", "--role", "admin"),
                          "longpassword1"),
                         (("relay", "set-credentials", "default", "--username", "u",
                           "--no-verify"), "relay-secret")):
        done = _cli_with_stdin(target, *args, "--password-stdin", stdin=f"{secret}\n")
        assert done.returncode == 0, done.stderr
    before = _added_by_hand(database_url)
    assert set(before.values()) == {"1"}, before

    refused = target.cli("restore", str(backup))
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    for what in ADDED_BY_HAND:
        assert f" 1 {what}" in lines[0], lines[0]
    assert "--force" in lines[0]
    assert _added_by_hand(database_url) == before
    assert status_counts(database_url) == {}

    forced = target.cli("restore", str(backup), "--force")
    assert forced.returncode == 0, forced.stderr
    assert status_counts(database_url) == {"queued": 2}
    assert set(_added_by_hand(database_url).values()) == {"0"}


def test_restore_is_refused_while_outbox_serves_the_database_even_with_force(
        tmp_path: Path, database_url: str) -> None:
    """A running serve goes on from what it holds in memory and writes over the restored
    rows, so no restore while it runs, --force or not; once it stopped, it works."""
    backup = _backup_of_two_messages(tmp_path)
    config = base_config(tmp_path, database_url, [relay_for_nowhere()])
    fill_queue(config, 3)
    target = OutboxProcess(write_config(tmp_path / "target.toml", config), config).start()
    try:
        refused = target.cli("restore", str(backup), "--force")
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert "1 Outbox process is using the database" in lines[0], lines[0]
        assert "(outbox serve, pid " in lines[0], lines[0]  # one process: its worker too
        assert "stop every `outbox serve`, `outbox worker` and `outbox submission`" \
            in lines[0], lines[0]
        assert scalar(database_url, "SELECT count(*) FROM messages") == "3"
    finally:
        target.stop()
    forced = target.cli("restore", str(backup), "--force")
    assert forced.returncode == 0, forced.stderr
    assert status_counts(database_url) == {"queued": 2}


def test_an_older_schema_is_migrated_forward_on_restore(tmp_path: Path) -> None:
    """A backup made at revision 0007 (before the list-filter indexes of 0009) restores
    into PostgreSQL at the head revision, with its rows."""
    from alembic import command
    from sqlalchemy import create_engine

    from outbox.store.sql.store import alembic_config, head_revision

    old = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(old)
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0007_relay_governor")
    engine.dispose()
    sql(old, "INSERT INTO messages (id, message_id, status, sender, content, metadata, "
             "attempts, created_at, updated_at, held_seconds, hold_reason) VALUES ('m1', "
             "'<m1@example.test>', 'sent', 'a@example.test', '{}', '{}', 1, "
             "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:01.000000', 0, '')")
    source = OutboxProcess(write_config(tmp_path / "old.toml", base_config(
        tmp_path, old, [relay_for_nowhere()])), {})
    backup = tmp_path / "old.tar"
    made = source.cli("backup", "-o", str(backup))
    assert made.returncode == 0, made.stderr
    assert "schema 0007_relay_governor" in made.stdout
    with fresh_database() as target_url:
        config = base_config(tmp_path, target_url, [relay_for_nowhere()])
        target = OutboxProcess(write_config(tmp_path / "new.toml", config), config)
        restored = target.cli("restore", str(backup))
        assert restored.returncode == 0, restored.stderr
        assert scalar(target_url, "SELECT version_num FROM alembic_version") == head_revision()
        assert scalar(target_url, "SELECT status FROM messages WHERE id = 'm1'") == "sent"
        assert scalar(target_url, "SELECT count(*) FROM pg_indexes WHERE indexname = "
                                  "'ix_recipients_relay'") == "1"


def test_a_postgresql_backup_restores_into_sqlite_with_attachments_in_the_database(
        tmp_path: Path) -> None:
    """The other direction, and the database blob store: a PostgreSQL snapshot (one
    REPEATABLE READ transaction) with an attachment file restores into SQLite with
    `[storage] blobs = "database"`; the exported message carries the same bytes."""
    from tests.e2e.mail import ATTACHMENT, submit_with_attachment_and_bcc

    with fresh_database() as source_url:
        (tmp_path / "pg").mkdir()
        source = _small_instance(tmp_path / "pg", source_url, 4)
        with_file, _ = submit_with_attachment_and_bcc(source.config)
        backup = tmp_path / "pg.tar"
        made = source.cli("backup", "-o", str(backup))
        assert made.returncode == 0, made.stderr
        assert "postgresql schema" in made.stdout and "5 messages, 1 attachments" in made.stdout
    (tmp_path / "lite").mkdir()
    url = f"sqlite:///{tmp_path}/lite/outbox.db"
    config = base_config(tmp_path / "lite", url, [relay_for_nowhere()],
                         storage={"blobs": "database"})
    target = OutboxProcess(write_config(tmp_path / "lite" / "outbox.toml", config), config)
    restored = target.cli("restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert status_counts(url) == {"queued": 5}
    assert int(scalar(url, "SELECT count(*) FROM blob_chunks")) >= 1
    exported = target.cli("export", "--status", "queued", "-o", str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    assert ATTACHMENT in _decoded_parts(tmp_path / "out" / f"{with_file}.eml")


def _decoded_parts(eml: Path) -> list[bytes]:
    import email

    message = email.message_from_bytes(eml.read_bytes())
    return [part.get_payload(decode=True) for part in message.walk()
            if part.get_filename()]
