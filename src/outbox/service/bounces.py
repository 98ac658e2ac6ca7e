"""The bounces facet: the VERP return path a message leaves with, and what a message
that came back to it does (`receive`), whatever brought it (the bounce SMTP listener,
the IMAP poller).

`receive(raw, rcpt_to)`:
1. `core.bounces.parse_bounce` says what it is; an auto-reply or anything that is
   not a bounce changes nothing (logged);
2. the VERP token of an envelope recipient (else of a To / Delivered-To header)
   names the message; without a valid token nothing changes;
3. per recipient the bounce reports on (a recipient of that message):
   - hard: recipient status `bounced` with the DSN's status, the server's words and
     the catalogue's guidance; a `bounced` event; the address suppressed when
     `core.suppression.suppression_for` says so (5.1.x, ...);
   - soft: a `bounced` event only (the relay still retries, or already gave up);
   - complaint: a `complained` event and the address suppressed.
Each recipient's change is one transaction (`store.suppressions.record_bounce`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from outbox.clock import utcnow
from outbox.config import Settings
from outbox.core import verp
from outbox.core.bounces import BouncedRecipient, BounceKind, BounceReport, parse_bounce
from outbox.core.model import Event, EventType, RecipientStatus
from outbox.core.suppression import Suppression, suppression_for
from outbox.errors import BounceUnreadable, NotFound
from outbox.mailbox import ImapMailbox
from outbox.store.base import BounceRecord, Message, Store
from outbox.supervision import Loops, supervise

log = structlog.get_logger("outbox.bounces")

VERP_KEY_NAME = "verp"


@dataclass(frozen=True, slots=True)
class BounceResult:
    """What one received message did."""

    kind: BounceKind
    message: str | None = None  # Outbox's id of the bounced message, when found
    recorded: list[str] = field(default_factory=list)  # recipients changed
    suppressed: list[str] = field(default_factory=list)


class Bounces:
    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], datetime] = utcnow, loops: Loops | None = None) -> None:
        self.settings = settings.bounces
        self.store = store
        self.clock = clock
        self.loops = loops or Loops()
        self._key: bytes | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.domain)

    async def key(self) -> bytes:
        if self._key is None:
            configured = self.settings.secret.get_secret_value()
            self._key = configured.encode() if configured else (
                await self.store.keys.signing_key(VERP_KEY_NAME, secrets.token_bytes(32),
                                                  self.clock()))
        return self._key

    async def return_path(self, message: Message) -> str:
        """The envelope sender a message leaves with: its VERP return path when
        `[bounces] domain` is set, else the sender it was submitted with."""
        if not self.enabled:
            return message.sender
        return verp.return_path(message.id, self.settings.local_part, self.settings.domain,
                                await self.key())

    def accepts(self, rcpt: str) -> bool:
        """Is this envelope recipient the bounce mailbox (for the SMTP listener)?"""
        return self.enabled and verp.is_bounce_address(rcpt, self.settings.local_part,
                                                        self.settings.domain)

    async def receive(self, raw: bytes, rcpt_to: Sequence[str] = ()) -> BounceResult:
        """Read and apply one message that came back (`BounceUnreadable` when it is not
        a message at all)."""
        report = parse_bounce(raw)
        if not report.is_bounce:
            log.info("not a bounce; ignored", kind=report.kind.value, summary=report.summary)
            return BounceResult(report.kind)
        message = await self._message_of(report, rcpt_to)
        if message is None:
            log.warning("bounce for no message of ours; ignored", kind=report.kind.value,
                        summary=report.summary)
            return BounceResult(report.kind)
        result = BounceResult(report.kind, message.id)
        for recipient in _about(report, message):
            await self._apply(report, message, recipient, result)
        return result

    async def poll_mailbox(self, mailbox: ImapMailbox | None = None) -> list[BounceResult]:
        """One round of IMAP intake: every message not yet processed is applied, then
        marked processed (moved or flagged). A message that is not a message at all is
        marked too; a failure to record stops the round, and the rest waits for the
        next one, unmarked."""
        mailbox = mailbox or ImapMailbox(self.settings.imap)
        done: list[str] = []
        results: list[BounceResult] = []
        try:
            for found in await mailbox.fetch():
                try:
                    results.append(await self.receive(found.raw, found.rcpt_to))
                except BounceUnreadable as exc:
                    log.warning("unreadable message in the bounce mailbox; marked",
                                uid=found.uid, error=exc.message)
                done.append(found.uid)
        finally:
            await mailbox.mark_processed(done)
        return results

    async def poll_periodically(self) -> None:
        """For `outbox serve`: poll the [bounces.imap] mailbox every poll_interval, under
        supervision (a failing server is logged once per streak and backed off).
        Returns at once when no mailbox is configured."""
        imap = self.settings.imap
        if not imap.host:
            return
        mailbox = ImapMailbox(imap)
        interval = imap.poll_interval.total_seconds()

        async def round() -> float:
            await self.poll_mailbox(mailbox)
            return interval

        await supervise(self.loops.register("bounce mailbox", critical=False), round)

    async def _message_of(self, report: BounceReport, rcpt_to: Sequence[str]
                          ) -> Message | None:
        key = await self.key()
        found = verp.first_message_of([*rcpt_to, *report.addressed_to],
                                      self.settings.local_part, self.settings.domain, key)
        if found is None:
            return None
        try:
            return (await self.store.messages.get(found)).message
        except NotFound:
            return None

    async def _apply(self, report: BounceReport, message: Message,
                     recipient: BouncedRecipient, result: BounceResult) -> None:
        now = self.clock()
        reason = suppression_for(recipient)
        suppression = Suppression(
            recipient.address, reason, now, _detail(recipient), message.id) if reason else None
        record = _record(report, message.id, recipient, now, suppression)
        if not await self.store.suppressions.record_bounce(record):
            log.warning("bounce names no recipient of the message; ignored",
                        message=message.id, recipient=recipient.address)
            return
        result.recorded.append(recipient.address)
        if suppression is not None:
            result.suppressed.append(recipient.address)
        log.info("bounce recorded", message=message.id, recipient=recipient.address,
                 kind=recipient.kind.value, status=recipient.status,
                 suppressed=suppression is not None)


def _about(report: BounceReport, message: Message) -> tuple[BouncedRecipient, ...]:
    """The recipients the bounce reports on; a complaint that names nobody is about
    the message's only recipient, when it has one."""
    if report.recipients or report.kind is not BounceKind.COMPLAINT:
        return report.recipients
    if len(message.recipients) == 1:
        return (BouncedRecipient(message.recipients[0].address, BounceKind.COMPLAINT),)
    return ()


def _record(report: BounceReport, message_id: str, recipient: BouncedRecipient,
            now: datetime, suppression: Suppression | None) -> BounceRecord:
    reply = recipient.reply
    words = str(reply) if recipient.kind is not BounceKind.COMPLAINT else ""
    detail = f"{recipient.kind.value} ({report.format.value}) {report.summary}"
    if recipient.kind is BounceKind.COMPLAINT:
        event = Event(now, EventType.COMPLAINED, recipient=recipient.address,
                      guidance=recipient.guidance,
                      detail=f"feedback type {report.feedback_type or 'abuse'}; {detail}")
        return BounceRecord(message_id, recipient.address, event, suppression=suppression)
    event = Event(now, EventType.BOUNCED, recipient=recipient.address,
                  reply_code=reply.code, enhanced_code=recipient.status, reply=words,
                  guidance=recipient.guidance, detail=detail)
    if recipient.kind is not BounceKind.HARD:
        return BounceRecord(message_id, recipient.address, event, suppression=suppression)
    return BounceRecord(message_id, recipient.address, event, RecipientStatus.BOUNCED,
                        reply.code, recipient.status, words, recipient.guidance, suppression)


def _detail(recipient: BouncedRecipient) -> str:
    if recipient.kind is BounceKind.COMPLAINT:
        return "spam complaint (feedback report)"
    return str(recipient.reply)[:300]
