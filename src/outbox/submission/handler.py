"""The listener's aiosmtpd handler: MAIL, RCPT and DATA answered by the service.

MAIL and RCPT are checked as `outbox.messages.submit` will check them (syntax, a
relay for the recipient's domain), so a bad address is refused at once with its
own reply. At the final dot the message is read into a `Submission`
(`core.inbound`) and submitted; the 250 is returned only after `submit`
returned, which is after the commit. A refusal says why, with the file's or
header's name; anything unexpected is a 451, never a 250.

A key over its `messages_per_minute` (the same bucket as the API's) gets a
451 4.7.1 saying when to try again, and the client keeps the message.

A message whose Message-ID this key sent before, to the same recipients, is
answered 250 with the earlier queue id and not queued again when it is the same
message (as the API's `[delivery] dedupe_message_id` decides it), and refused with
a 5xx when it is another message: the idempotency key is made of the Message-ID
and the envelope (a client that split its recipients over several transactions
still gets each transaction queued).
"""

from __future__ import annotations

import asyncio
import hashlib

import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from outbox.core import addresses
from outbox.core.compose import Submission
from outbox.core.inbound import Envelope as InboundEnvelope
from outbox.core.inbound import is_sealed, message_id_of, read_message
from outbox.errors import InputError, OutboxError
from outbox.service import Outbox
from outbox.submission import auth, replies
from outbox.submission.spool import Data, split

log = structlog.get_logger("outbox.submission")
_HEAD = 64 * 1024  # bytes of a spooled message read for its headers


def idempotency_key(message_id: str | None, recipients: list[str]) -> str | None:
    """The SMTP counterpart of Idempotency-Key: Message-ID and envelope, or None
    for a message without a Message-ID (Outbox gives it one; nothing to compare)."""
    if not message_id:
        return None
    envelope = "\n".join(sorted({r.lower() for r in recipients}))
    digest = hashlib.sha256(f"{message_id}\n{envelope}".encode()).hexdigest()
    return f"smtp:{digest}"


class SubmissionHandler:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.max_recipients = outbox.settings.submission.max_recipients
        self.in_flight = 0  # DATA being submitted: a graceful stop waits for them
        self.idle = asyncio.Event()
        self.idle.set()

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await auth.log_in(self.outbox.keys, server, await auth.read_plain(server, args))

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await auth.log_in(self.outbox.keys, server, await auth.read_login(server, args))

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if not _local_part(address).isascii():
            return replies.non_ascii_local_part(address, sender=True)
        try:
            addresses.parse_mailbox(address, "sender")
        except InputError as exc:
            return replies.sender_refused(exc)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return replies.SENDER_OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return replies.too_many_recipients(self.max_recipients)
        if not _local_part(address).isascii():
            return replies.non_ascii_local_part(address, sender=False)
        try:
            await self.outbox.messages.check_recipient(address)
        except InputError as exc:
            return replies.recipient_refused(exc)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return replies.RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Session,
                          envelope: Envelope) -> str:
        self.in_flight += 1
        self.idle.clear()
        try:
            return await self._submit(server, envelope)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()

    async def _submit(self, server: SMTP, envelope: Envelope) -> str:
        principal = auth.principal_of(server)
        owner = principal.name
        tokens: list[str] = []
        key: str | None = None
        try:
            submission, tokens = await self._read(envelope)
            key = self._key(submission, envelope)
            # The key's messages_per_minute, shared with the API: over it, 451 4.7.1.
            await self.outbox.rate_limits.admit_messages(principal)
            submitted = await self.outbox.messages.submit(
                submission, owner=owner, idempotency_key=key, body_hash=key, dedupe=False,
                key_is_message_id=True)
        except OutboxError as exc:
            log.info("smtp message refused", owner=owner, reason=exc.message)
            return replies.data_refused(exc, resend_is_safe=key is not None)
        except Exception:  # the client keeps the message when it hears 4xx
            log.exception("smtp message not queued", owner=owner)
            return replies.NOT_QUEUED
        finally:
            self.outbox.files.forget(tokens)
        message = submitted.message
        return replies.queued(message.id, message.message_id, replayed=submitted.replayed)

    async def _read(self, envelope: Envelope) -> tuple[Submission, list[str]]:
        """The submission, and the tokens of the attachments a large message had
        stored as it was read (`spool.split`), to forget once it is queued."""
        mail = InboundEnvelope(envelope.mail_from or "", tuple(envelope.rcpt_tos))
        data: Data | None = getattr(envelope, "data", None)
        if data is None or not data.spooled:
            return read_message(envelope.original_content or b"", mail), []
        # Signed or encrypted mail goes out as it came: read whole, never split.
        head = b"".join(data.read(0, min(data.size, _HEAD)))
        parts = None if is_sealed(head) else await split(data, self.outbox.files,
                                                         self.outbox.clock())
        if parts is not None:
            skeleton, spooled = parts
            tokens = list(spooled.values())
            try:
                submission = read_message(skeleton, mail, spooled)
            except BaseException:  # refused (a bad From): the stored files are not kept
                self.outbox.files.forget(tokens)
                raise
            found = [a.content_base64 for a in submission.attachments
                     if a.content_base64 in spooled.values()]
            if sorted(found) == sorted(tokens):
                return submission, tokens
            # Split otherwise than the stdlib reads it: read whole, as before.
            self.outbox.files.forget(tokens)
            log.warning("a large message read whole: its parts did not split as read")
        return read_message(b"".join(data.read(0, data.size)), mail), []

    def _key(self, submission: Submission, envelope: Envelope) -> str | None:
        if not self.outbox.settings.delivery.dedupe_message_id:
            return None
        return idempotency_key(message_id_of(submission), envelope.rcpt_tos)


def _local_part(address: str) -> str:
    return address.rpartition("@")[0]
