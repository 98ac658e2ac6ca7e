"""Relay gates with a real worker, a SQLite store and aiosmtpd relays on loopback:
a failed login holds all of the relay's mail (no attempt counted, nothing
failed) and stops further logins; new credentials, or a login that works
again, release it; OAuth refresh failures and rotated tokens; clock skew in a
greeting."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import RelayFactory, ServerFactory
from tests.oauth_smtpd import CLIENT_ID, CLIENT_SECRET, MAILBOX, Authority, TokenEndpoint
from tests.oauth_smtpd import XOAuth2Handler as OAuthHandler
from tests.processes import wait_until_async as wait_until
from tests.smtpd import ScriptedServer

from outbox.config import RelaySettings, Settings
from outbox.core.compose import Submission
from outbox.core.model import EventType, MessageStatus, RecipientStatus, RecipientUpdate
from outbox.errors import LoginNotVerified
from outbox.ops.checks import Status
from outbox.service import Outbox
from outbox.service.diagnostics import doctor
from outbox.service.relays import CredentialsUpdate, Relays
from outbox.store.base import NEEDS_ATTENTION, RELAY_OK, AttemptRecord, MessageDetail
from outbox.worker.loop import Worker

GOOD = "correct-horse-battery-9"
WRONG = "wrong-password-4711"


@dataclass
class Node:
    """One Outbox process's worth: store, relay gates and a running worker."""

    outbox: Outbox
    worker: Worker
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def store(self) -> Any:
        return self.outbox.store

    def start(self) -> None:
        self.tasks.append(asyncio.create_task(self.worker.run()))

    async def submit(self, to: str = "rcpt@example.test") -> str:
        accepted = await self.outbox.messages.submit(Submission(
            sender="app@example.test", to=to, subject="hi", text="hello"))
        return accepted.message.id

    async def detail(self, id: str) -> MessageDetail:
        return await self.outbox.messages.get(id)

    async def wait_status(self, ids: Iterable[str], status: MessageStatus) -> None:
        async def reached() -> bool:
            return all([(await self.detail(i)).message.status is status for i in ids])

        await wait_until(reached, f"messages to be {status.value}")

    def credentials(self) -> Relays:
        """The operator's view, like `outbox relay ...` or the API."""
        return self.outbox.relays


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def open_node(tmp_path: Path) -> AsyncIterator[NodeFactory]:
    nodes: list[Node] = []

    async def open_one(relay: RelaySettings, **delivery: Any) -> Node:
        settings = Settings(
            database={"url": f"sqlite:///{tmp_path}/outbox.db"}, relays=[relay],
            delivery={"poll_interval": "50ms", "lease": "10s", "connect_timeout": "3s",
                      "command_timeout": "3s", "helo_name": "client.test", **delivery},
            retry={"first_delay": "100ms", "max_delay": "1s", "max_attempts": 5})
        outbox = await Outbox.open(settings)
        nodes.append(Node(outbox, outbox.start_delivery()))
        return nodes[-1]

    yield open_one
    for node in nodes:
        node.worker.stop()
        await asyncio.gather(*node.tasks)
        await node.outbox.close()


async def defer_with_one_attempt(node: Node, id: str) -> None:
    """As if an earlier attempt got a 451: deferred for an hour, one attempt spent."""
    now = node.outbox.clock()
    (claim,) = await node.store.messages.claim_due("earlier", now, now + timedelta(minutes=1), 1)
    await node.store.messages.record_attempts([AttemptRecord(
        message_id=id, token=claim.token, number=1, relay="test", started_at=now,
        finished_at=now, outcome="deferred", transcript="",
        recipient_updates=[RecipientUpdate(r.address, RecipientStatus.DEFERRED)
                           for r in claim.message.recipients],
        status=MessageStatus.DEFERRED, due_at=now + timedelta(hours=1), events=[])])


def db_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.glob("outbox.db*")
                    if p.is_file() and p.suffix != ".key")


async def test_a_wrong_password_holds_all_the_relays_mail_until_new_credentials_deliver_it(
        smtp_server: ServerFactory, make_relay: RelayFactory, open_node: NodeFactory,
        tmp_path: Path) -> None:
    server = smtp_server(auth=(MAILBOX, GOOD))
    node = await open_node(make_relay(server, username=MAILBOX, password=WRONG))
    deferred = await node.submit()
    await defer_with_one_attempt(node, deferred)
    queued = [await node.submit(), await node.submit()]

    node.start()
    await node.wait_status([deferred, *queued], MessageStatus.HELD)

    auth = await node.store.relay_auth.load_relay_credentials("test")
    assert (auth.state, auth.guidance) == (NEEDS_ATTENTION, "smtp.5.7.8")
    assert auth.reason.startswith("535 5.7.8")
    assert [(await node.detail(i)).message.attempts for i in (deferred, *queued)] == [1, 0, 0]
    alert = [e for e in (await node.detail(deferred)).events if e.type is EventType.ALERT][-1]
    assert (alert.reply_code, alert.guidance) == (535, "smtp.5.7.8")
    assert "outbox relay set-credentials test" in alert.detail
    logins = server.commands.count("AUTH")
    assert 1 <= logins <= 2 and server.messages == []

    late = await node.submit()  # not another login with credentials that failed
    await node.wait_status([late], MessageStatus.HELD)
    assert server.commands.count("AUTH") == logins
    assert any(e.guidance == "relay_awaiting_credentials" for e in (await node.detail(late)).events)

    status, released = await node.credentials().set_credentials(
        "test", CredentialsUpdate(password=GOOD))

    assert (status.state, status.source, status.auth, released) == (RELAY_OK, "stored",
                                                                    "password", 4)
    await node.wait_status([deferred, *queued, late], MessageStatus.SENT)
    assert [(await node.detail(i)).message.attempts for i in (deferred, *queued)] == [2, 1, 1]
    assert len(server.messages) == 4
    assert GOOD.encode() not in db_bytes(tmp_path) and WRONG.encode() not in db_bytes(tmp_path)


async def test_a_relay_test_that_logs_in_again_releases_the_held_mail(
        smtp_server: ServerFactory, make_relay: RelayFactory, open_node: NodeFactory) -> None:
    server = smtp_server(auth=(MAILBOX, GOOD))
    node = await open_node(make_relay(server, username=MAILBOX, password=WRONG))
    node.start()
    held = await node.submit()
    await node.wait_status([held], MessageStatus.HELD)

    server.handler.credentials = (MAILBOX, WRONG)  # the provider changed the password back
    tested = await node.credentials().test("test")

    assert tested.result.ok and tested.result.info.auth_mechanism == "PLAIN"
    assert tested.released == 1 and server.messages == []  # a test sends nothing
    await node.wait_status([held], MessageStatus.SENT)


async def test_a_failed_relay_test_changes_nothing_and_names_the_fix(
        smtp_server: ServerFactory, make_relay: RelayFactory, open_node: NodeFactory) -> None:
    server = smtp_server(auth=(MAILBOX, GOOD))
    node = await open_node(make_relay(server, username=MAILBOX, password=WRONG))

    tested = await node.credentials().test("test")

    assert not tested.result.ok and tested.released == 0
    assert tested.guidance is not None and "app password" in tested.guidance.next_step
    assert WRONG not in tested.result.transcript
    assert (await node.store.relay_auth.load_relay_credentials("test")).state == RELAY_OK


@pytest.fixture
def oauth(smtp_server: ServerFactory, make_relay: RelayFactory
          ) -> Iterator[tuple[Authority, RelaySettings]]:
    authority = Authority(refresh_tokens={"rt-first"}, rotate=True)
    with TokenEndpoint(authority) as endpoint:
        server = smtp_server(handler=OAuthHandler(authority), auth_mechanisms=())
        yield authority, make_relay(server, username=MAILBOX, oauth2={
            "token_url": endpoint.url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "refresh_token": "rt-first"})


async def test_oauth_rotation_is_saved_encrypted_and_a_dead_refresh_token_holds_until_replaced(
        oauth: tuple[Authority, RelaySettings], open_node: NodeFactory, tmp_path: Path) -> None:
    authority, relay = oauth
    node = await open_node(relay, messages_per_connection=1)  # each message logs in
    node.start()
    first = await node.submit()
    await node.wait_status([first], MessageStatus.SENT)

    (rotated,) = authority.refresh_tokens
    current, auth = await node.credentials().current("test")
    assert current.oauth2 is not None and current.oauth2.refresh_token.get_secret_value() == rotated
    assert auth.version == 0 and auth.credentials is not None
    assert rotated.encode() not in db_bytes(tmp_path)

    authority.revoke_all()  # the provider revoked the grant: refresh fails
    second = await node.submit()
    await node.wait_status([second], MessageStatus.HELD)
    auth = await node.store.relay_auth.load_relay_credentials("test")
    assert auth.guidance == "token_refresh_failed" and "invalid_grant" in auth.reason

    authority.refresh_tokens.add("rt-reauthorized")
    _, released = await node.credentials().set_credentials(
        "test", CredentialsUpdate(refresh_token="rt-reauthorized"))
    assert released == 1
    await node.wait_status([second], MessageStatus.SENT)
    for secret in authority.secrets():
        assert secret.encode() not in db_bytes(tmp_path)


async def test_verified_oauth2_credentials_keep_the_refresh_token_the_provider_rotated_to(
        oauth: tuple[Authority, RelaySettings], open_node: NodeFactory, tmp_path: Path) -> None:
    """`relay set-credentials` logs in first; with a provider that rotates refresh
    tokens, what is stored is the token that works now, not the one given."""
    authority, relay = oauth
    node = await open_node(relay)
    with pytest.raises(LoginNotVerified, match=r"refused the login .*invalid_grant"):
        await node.credentials().set_credentials(
            "test", CredentialsUpdate(refresh_token="rt-unknown"), verify=True)
    assert (await node.store.relay_auth.load_relay_credentials("test")).credentials is None

    authority.refresh_tokens.add("rt-given")
    await node.credentials().set_credentials(
        "test", CredentialsUpdate(refresh_token="rt-given"), verify=True)
    assert "rt-given" not in authority.refresh_tokens  # spent by the verifying login
    current, auth = await node.credentials().current("test")
    assert auth.credentials is not None and current.oauth2 is not None
    assert current.oauth2.refresh_token.get_secret_value() in authority.refresh_tokens
    assert authority.accepted, "the relay saw an XOAUTH2 login"


async def test_a_token_endpoint_ten_minutes_off_gives_a_clock_skew_warning_event(
        oauth: tuple[Authority, RelaySettings], open_node: NodeFactory) -> None:
    authority, relay = oauth
    authority.date_offset = 600  # the provider's clock is 10 minutes ahead of ours
    node = await open_node(relay)
    node.start()
    sent = await node.submit()
    await node.wait_status([sent], MessageStatus.SENT)

    async def has_alert() -> bool:
        return any(e.guidance == "clock_skew" for e in (await node.detail(sent)).events)

    await wait_until(has_alert, "the clock-skew event")
    (event,) = [e for e in (await node.detail(sent)).events if e.guidance == "clock_skew"]
    assert event.type is EventType.ALERT and "NTP" in event.detail
    seconds = int(event.detail.split("s behind the OAuth2 token endpoint")[0].split()[-1])
    assert 590 <= seconds <= 610

    # SQLite and a greeting without a date: doctor's only time source is the reading
    # delivery kept, so its clock check is not skipped.
    (check,) = [c for c in (await doctor(node.outbox.settings)).checks
                if c.name == "clock skew"]
    assert check.status is Status.FAIL, check
    assert check.detail.startswith(f"delivery on {socket.gethostname()} (measured ")
    assert "s behind the OAuth2 token endpoint" in check.detail


async def test_a_greeting_ten_minutes_off_gives_a_clock_skew_alert_event(
        make_relay: RelayFactory, open_node: NodeFactory) -> None:
    server = ScriptedServer()
    server._controller.SMTP_kwargs["ident"] = f"ESMTP ready; {formatdate(time.time() - 600)}"
    with server:
        node = await open_node(make_relay(server))
        node.start()
        sent = await node.submit()
        await node.wait_status([sent], MessageStatus.SENT)

        async def has_alert() -> bool:
            return any(e.guidance == "clock_skew" for e in (await node.detail(sent)).events)

        await wait_until(has_alert, "the clock-skew event")
    (event,) = [e for e in (await node.detail(sent)).events if e.guidance == "clock_skew"]
    assert event.type is EventType.ALERT
    assert "ahead of relay test's greeting" in event.detail and "NTP" in event.detail


async def test_a_refresh_token_rotated_by_another_node_is_adopted_not_taken_for_a_failure(
        oauth: tuple[Authority, RelaySettings], open_node: NodeFactory) -> None:
    authority, relay = oauth  # every refresh rotates; the old refresh token stops working
    one, two = await open_node(relay), await open_node(relay)
    for node in (one, two):
        await node.worker.relays["test"].sync_credentials()  # both start from the config's token
    message = b"Subject: hi\r\n\r\nhello\r\n"

    first = await one.worker.relays["test"].deliver("app@example.test", ["a@example.test"],
                                                    message)
    second = await two.worker.relays["test"].deliver("app@example.test", ["b@example.test"],
                                                     message)

    assert first.failure is None and second.failure is None, second.transcript
    used = [r["refresh_token"] for r in authority.token_requests]
    assert used[:2] == ["rt-first", "rt-first"] and len(used) == 3  # refused, then adopted
    assert (await two.store.relay_auth.load_relay_credentials("test")).state == RELAY_OK


async def test_after_a_config_fix_and_restart_the_first_working_login_releases_the_held_mail(
        smtp_server: ServerFactory, make_relay: RelayFactory, open_node: NodeFactory) -> None:
    server = smtp_server(auth=(MAILBOX, GOOD))
    before = await open_node(make_relay(server, username=MAILBOX, password=WRONG))
    before.start()
    held = [await before.submit(), await before.submit()]
    await before.wait_status(held, MessageStatus.HELD)
    before.worker.stop()
    await asyncio.gather(*before.tasks)

    after = await open_node(make_relay(server, username=MAILBOX, password=GOOD))
    after.start()
    new = await after.submit()

    await after.wait_status([new, *held], MessageStatus.SENT)
    assert (await after.store.relay_auth.load_relay_credentials("test")).state == RELAY_OK
    assert [(await after.detail(i)).message.attempts for i in held] == [1, 1]
