"""IMAP bounce intake against a real Dovecot (tests/dovecot.py), in process: every
message is applied once, then moved to [bounces.imap] move_to (or flagged, see
tests/e2e/test_bounces.py); a message that is not a message and a bounce for a return
path Outbox did not make are moved too, and change nothing; a second poll finds
nothing to do."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.dovecot import Dovecot, running_dovecot
from tests.e2e.test_bounces import dsn
from tests.processes import free_port

from outbox.config import Settings
from outbox.core.compose import Submission
from outbox.core.model import RecipientStatus
from outbox.errors import MailboxError
from outbox.mailbox import ImapMailbox
from outbox.service import Outbox


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


def settings(tmp_path: Path, dovecot: Dovecot, **imap: object) -> Settings:
    return Settings(
        database={"url": f"sqlite:///{tmp_path}/outbox.db"},
        storage={"blob_dir": str(tmp_path / "blobs")},
        relays=[{"name": "default", "host": "127.0.0.1", "port": free_port(),
                 "security": "none"}],
        bounces={"domain": "bounces.example.test",
                 "imap": {"host": dovecot.host, "port": dovecot.port, "security": "none",
                          "username": dovecot.user, "password": dovecot.password, **imap}})


def folder_count(dovecot: Dovecot, folder: str) -> int:
    imap = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=5)
    try:
        imap.login(dovecot.user, dovecot.password)
        status, data = imap.select(folder)
        return int(data[0] or 0) if status == "OK" else -1
    finally:
        imap.logout()


async def test_each_message_is_applied_once_and_moved(tmp_path: Path, dovecot: Dovecot) -> None:
    outbox = await Outbox.open(settings(tmp_path, dovecot, move_to="Outbox Processed"))
    try:
        submitted = await outbox.messages.submit(Submission(
            sender="shop@example.test", to=["ann@example.test", "bob@example.test"],
            subject="Order", text="hi"))
        message = submitted.message
        return_path = await outbox.bounces.return_path(message)
        dovecot.deliver(dsn(return_path, "bob@example.test", message.message_id), "dsn")
        dovecot.deliver(b"\r\n\r\nnot a message at all\r\n", "junk")
        forged = return_path.replace("bounces+", "bounces+0")
        dovecot.deliver(dsn(forged, "ann@example.test", message.message_id), "forged")
        assert folder_count(dovecot, "INBOX") == 3

        results = await outbox.bounces.poll_mailbox()
        assert [(r.message, r.recorded, r.suppressed) for r in results] == [
            (message.id, ["bob@example.test"], ["bob@example.test"]),
            (None, [], [])]  # the junk is not among the results, but is moved
        assert folder_count(dovecot, "INBOX") == 0
        assert folder_count(dovecot, '"Outbox Processed"') == 3
        assert await outbox.bounces.poll_mailbox() == []

        detail = await outbox.messages.get(message.id)
        statuses = {r.address: r.status for r in detail.message.recipients}
        assert statuses == {"ann@example.test": RecipientStatus.PENDING,
                            "bob@example.test": RecipientStatus.BOUNCED}
        assert [e.type.value for e in detail.events].count("bounced") == 1
        assert list(await outbox.suppressions.find(["bob@example.test", "ann@example.test"])) \
            == ["bob@example.test"]
    finally:
        await outbox.close()


async def test_wrong_credentials_are_a_mailbox_error(tmp_path: Path, dovecot: Dovecot) -> None:
    config = settings(tmp_path, dovecot, password="wrong")
    with pytest.raises(MailboxError, match=r"IMAP 127\.0\.0\.1"):
        await ImapMailbox(config.bounces.imap).fetch()
