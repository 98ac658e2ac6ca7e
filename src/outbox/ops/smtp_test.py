"""`outbox smtp-test`: a swaks-style test send through one relay, outside the queue.

It opens a session exactly as a delivery does (connect, EHLO, STARTTLS, AUTH),
with the credentials delivery uses (stored ones override the config file's:
`ops.credentials`), sends one small message, and shows the conversation line by line as it
happens (AUTH redacted, message data only counted), then one line with the
result: what the relay said and, unless it accepted, the guidance for it.
"""

from __future__ import annotations

import base64
import mimetypes
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path

from outbox import __version__
from outbox.config import DeliverySettings, RelaySettings, Settings
from outbox.core.addresses import parse_mailbox
from outbox.core.classify import classify
from outbox.core.content import EmbeddedFile, MessageContent
from outbox.core.guidance import describe
from outbox.core.mime import build_message
from outbox.core.model import OutcomeKind
from outbox.core.report import DeliveryReport, SessionFailure, Stage
from outbox.delivery.smtp.errors import SessionError
from outbox.delivery.smtp.session import SmtpSession
from outbox.delivery.transcript import Transcript
from outbox.errors import InputError, InvalidAddress
from outbox.ids import new_message_id
from outbox.ops.checks import guidance_for
from outbox.ops.credentials import Login, config_login

Echo = Callable[[str], None]


class LiveTranscript(Transcript):
    """A transcript that hands each line to `echo` as soon as it is recorded
    (already redacted: redaction happens when a line is recorded)."""

    def __init__(self, secrets: Iterable[str], echo: Echo) -> None:
        super().__init__(secrets)
        self._echo = echo
        self._shown = 0

    def client(self, text: str, *, secret: bool = False) -> None:
        super().client(text, secret=secret)
        self._flush()

    def server(self, code: int, message: str, *, secret: bool = False) -> None:
        super().server(code, message, secret=secret)
        self._flush()

    def data(self, size: int) -> None:
        super().data(size)
        self._flush()

    def note(self, text: str) -> None:
        super().note(text)
        self._flush()

    def _flush(self) -> None:
        lines = self.render().splitlines()
        for line in lines[self._shown:]:
            self._echo(line)
        self._shown = len(lines)


@dataclass(frozen=True, slots=True)
class SampleMessage:
    sender: str
    recipient: str
    message_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    summary: str  # one line: what happened and, on failure, what to do


def find_relay(settings: Settings, name: str) -> RelaySettings:
    for relay in settings.relays:
        if relay.name == name:
            return relay
    known = ", ".join(r.name for r in settings.relays) or "none configured"
    raise InputError(f"no relay named '{name}' (known: {known})", field="relay")


FALLBACK_DOMAIN = "localhost.localdomain"


def default_sender(relay: RelaySettings, delivery: DeliverySettings) -> str:
    """The relay's username if it is an address, else outbox-smtp-test@ the EHLO name or the
    host name when that is a valid domain (a name without a dot is not), else
    @localhost.localdomain: always an address Outbox's own validator takes."""
    if "@" in relay.username:
        return relay.username
    for domain in (delivery.helo_name, socket.gethostname()):
        candidate = f"outbox-smtp-test@{domain}"
        if domain and _is_valid(candidate):
            return candidate
    return f"outbox-smtp-test@{FALLBACK_DOMAIN}"


def _is_valid(address: str) -> bool:
    try:
        parse_mailbox(address, "--from")
    except InvalidAddress:
        return False
    return True


def build_test_message(sender: str, recipient: str, relay: RelaySettings, now: datetime,
                       attachments: Sequence[Path] = ()) -> SampleMessage:
    """A small message saying what it is; `--to` and `--from` must be addresses."""
    to = parse_mailbox(recipient, "--to")
    try:
        frm = parse_mailbox(sender, "--from")
    except InvalidAddress as exc:
        raise InvalidAddress(exc.message, field="from",
                             hint="give the sender the relay accepts with --from ADDRESS") \
            from None
    message_id = new_message_id(frm.ascii_domain)
    content = MessageContent(
        from_=frm.formatted(), to=(to.formatted(),), date=format_datetime(now),
        subject=f"Outbox SMTP test through relay {relay.name}",
        text=(f"This is a test message sent by `outbox smtp-test` (Outbox {__version__}) "
              f"through relay {relay.name} ({relay.host}:{relay.port}) at "
              f"{now.isoformat()}.\nIt was not queued; nothing else was sent.\n"),
        headers=(("X-Outbox-Test", "smtp-test"),),
        attachments=tuple(_attachment(path) for path in attachments),
    )
    data = build_message(content, message_id)
    return SampleMessage(frm.addr_spec, to.addr_spec, message_id, data)


def _attachment(path: Path) -> EmbeddedFile:
    if not path.is_file():
        raise InputError(f"'{path}' is not a readable file", field="attach")
    return EmbeddedFile(path.name,
                        mimetypes.guess_type(path.name)[0] or "application/octet-stream",
                        base64.b64encode(path.read_bytes()).decode("ascii"))


async def send_test(relay: RelaySettings, delivery: DeliverySettings, message: SampleMessage,
                    echo: Echo, login: Login | None = None) -> SendResult:
    """Set up a session, send `message`, QUIT; every line goes to `echo` live.
    `login`: the relay with the credentials to use (`ops.credentials.login_for`);
    None: the config file's."""
    login = login or config_login(relay)
    authenticators = list(login.authenticators)
    session = SmtpSession(login.relay, delivery, authenticators)
    session.transcript = LiveTranscript({s for a in authenticators for s in a.secrets}, echo)
    try:
        await session.setup()
    except SessionError as exc:
        return setup_failed(exc.failure, login.source)
    try:
        report = await session.send(message.sender, [message.recipient], message.data)
    finally:
        await session.close()
    return verdict(report, message)


def setup_failed(failure: SessionFailure, credentials: str = "") -> SendResult:
    g = guidance_for(failure)
    what = str(failure.reply) if failure.reply else (failure.detail or str(failure.condition))
    if credentials and failure.stage is Stage.AUTH:
        what += f" (credentials: {credentials})"
    return SendResult(False, f"FAILED at {failure.stage.value}: {g.title}: {what}. "
                             f"Next step: {g.next_step}")


def verdict(report: DeliveryReport, message: SampleMessage) -> SendResult:
    outcome = classify(report)[message.recipient]
    if outcome.kind is OutcomeKind.SENT:
        return SendResult(True, f"OK: relay {report.relay} accepted the message for "
                                f"{message.recipient} ({outcome.reply}); Message-ID "
                                f"{message.message_id}")
    g = describe(outcome.guidance, outcome.reply)
    return SendResult(False, f"{outcome.kind.value.upper()}: {g.one_line()}")
