"""One SMTP session to one relay: setup, then one message at a time.

    session = await open_session(relay, delivery)   # connect, EHLO, TLS, AUTH
    report = await session.send(sender, recipients, message)
    if await session.reset(): ...                     # RSET, ready for the next
    await session.close()

`setup` (and so `open_session`) raises `SessionError` with the failure and
the transcript. `send` never raises for an SMTP or network reason: every
reply, and the failure with the stage it happened in, is in the returned
`DeliveryReport`. Any failure leaves the session unusable; the caller closes
it. A relay that offers PIPELINING (RFC 2920) gets MAIL, every RCPT and DATA
in one write (`pipeline`), with the same report. Every network wait has a
deadline: connect_timeout for the connection and greeting, command_timeout
for each command (STARTTLS, AUTH and RSET included; QUIT at most 5 s), for
each pipelined reply and for each wait while the body is written,
data_timeout for the reply after the final ".".
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import aiosmtplib
from aiosmtplib.esmtp import parse_esmtp_extensions

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.model import Reply
from outbox.core.replies import ReplyCode, parse_reply
from outbox.core.report import Condition, DeliveryReport, SessionFailure, Stage
from outbox.delivery import tls
from outbox.delivery.auth import Authenticator, authenticators_for, choose_authenticator
from outbox.delivery.body import MessageBody
from outbox.delivery.smtp.connection import SmtpConnection
from outbox.delivery.smtp.data import dot_stuff, size_of, write_body, write_data
from outbox.delivery.smtp.envelope import Envelope, mail_command, prepare
from outbox.delivery.smtp.errors import SessionError
from outbox.delivery.smtp.hostnames import is_loopback, local_hostname
from outbox.delivery.smtp.info import not_after
from outbox.delivery.smtp.pipeline import PipelinedReplies


class SmtpSession(SmtpConnection):
    """An open, set-up SMTP session; one message at a time."""

    def __init__(self, relay: RelaySettings, delivery: DeliverySettings,
                 authenticators: Sequence[Authenticator] | None = None) -> None:
        self._authenticators = (list(authenticators) if authenticators is not None
                                else authenticators_for(relay))
        super().__init__(relay, delivery, (s for auth in self._authenticators
                                           for s in auth.secrets))
        self._helo_name = ""
        self._finished = False  # the last transaction ended with the reply to its "."

    # setup -----------------------------------------------------------------------

    async def setup(self) -> None:
        """Connect, greeting, EHLO, STARTTLS and AUTH as the relay asks.
        Raises `SessionError` carrying the failure and the transcript."""
        try:
            with self._mapped():
                await self._connect()
                await self._ehlo()
                await self._start_tls_if_wanted()
                await self._authenticate_if_configured()
        except SessionError as exc:
            await self.close()
            exc.transcript = self.transcript.render()
            raise
        except BaseException:
            self.abort()  # cancelled: leave no connection behind
            raise

    async def _connect(self) -> None:
        self._stage = Stage.CONNECT
        implicit = self.relay.security == "tls"
        self._helo_name = await local_hostname(self._delivery.helo_name)
        self._smtp = aiosmtplib.SMTP(
            hostname=self.relay.host, port=self.relay.port, start_tls=False,
            local_hostname=self._helo_name,
            timeout=self._delivery.connect_timeout.total_seconds(), use_tls=implicit,
            tls_context=tls.client_context(self.relay) if implicit else None)
        response = await self._smtp.connect()
        self.transcript.server(response.code, response.message)
        self.info.greeting = parse_reply(response.code, response.message)
        if implicit:
            self._note_tls()

    async def _ehlo(self) -> None:
        self._stage = Stage.EHLO
        name = self._helo_name.encode("ascii", "replace")
        response = await self._command(b"EHLO", name)
        if response.code >= 500:
            response = await self._command(b"HELO", name)
            self._check(response, ReplyCode.OK)
            self.info.extensions, self.info.auth_mechanisms = {}, ()
            return
        self._check(response, ReplyCode.OK)
        self._smtp_client().last_ehlo_response = response
        extensions, mechanisms = parse_esmtp_extensions(response.message)
        self.info.extensions = extensions
        self.info.auth_mechanisms = tuple(m.upper() for m in mechanisms)

    async def _start_tls_if_wanted(self) -> None:
        if self.relay.security != "starttls":
            return
        self._stage = Stage.STARTTLS
        if not self.info.offers("starttls"):
            raise SessionError(SessionFailure(
                Stage.STARTTLS, condition=Condition.STARTTLS_NOT_OFFERED,
                detail="the relay did not offer STARTTLS; Outbox never falls back to plaintext"))
        self.transcript.client("STARTTLS")
        response = await self._smtp_client().starttls(
            tls_context=tls.client_context(self.relay), server_hostname=self.relay.host,
            timeout=self._command_timeout)
        self.transcript.server(response.code, response.message)
        self._note_tls()
        await self._ehlo()

    async def _authenticate_if_configured(self) -> None:
        if not self.relay.has_credentials and not self._authenticators:
            return
        self._stage = Stage.AUTH
        authenticator = choose_authenticator(
            self._authenticators, self.info.auth_mechanisms,
            safe=self.is_tls or is_loopback(self.relay.host) or self.relay.allow_insecure_auth)
        if isinstance(authenticator, tuple):
            raise SessionError(SessionFailure(Stage.AUTH, condition=authenticator[0],
                                              detail=authenticator[1]))
        reply = await authenticator.authenticate(self)
        if reply.code != ReplyCode.AUTH_SUCCESSFUL:
            raise SessionError(SessionFailure(Stage.AUTH, reply=reply))
        self.info.auth_mechanism = authenticator.mechanism

    async def exchange(self, line: bytes, *, secret: bool = True) -> Reply:
        """Send one AUTH line and return the reply; both recorded redacted.
        (The `AuthChannel` that authenticators talk through.)"""
        self.transcript.client(line.decode("utf-8", "replace"), secret=secret)
        response = await self._smtp_client().execute_command(line, timeout=self._command_timeout)
        self.transcript.server(response.code, response.message, secret=True)
        return parse_reply(response.code, response.message)

    def _note_tls(self) -> None:
        smtp = self._smtp_client()
        cipher = smtp.get_transport_info("cipher")
        self.info.cipher = cipher[0] if cipher else None
        self.info.tls_version = cipher[1] if cipher else "TLS"
        self.info.certificate_expires = not_after(smtp.get_transport_info("peercert"))
        self.transcript.note(f"TLS established ({self.info.tls_version}, {self.info.cipher})")

    # one message -----------------------------------------------------------------

    async def send(self, sender: str, recipients: Sequence[str],
                   message: bytes | MessageBody) -> DeliveryReport:
        """MAIL, RCPT for each recipient, DATA; every reply in the report.
        Never raises for an SMTP or network reason: see `report.failure`.
        `message`: the bytes, or a body streamed in chunks (`delivery.body`)."""
        report = DeliveryReport(relay=self.relay.name, recipients=tuple(recipients))
        self._open_section()
        self._finished = False
        prepared = prepare(sender, recipients, message, self.info, self.relay.host)
        if isinstance(prepared, SessionFailure):
            report.failure = prepared
            self.transcript.failure(prepared)
        else:
            await self._send_checked(report, prepared, message)
        self._section_open = False
        self.messages_sent += 1
        self.last_used = time.monotonic()
        report.transcript = self.transcript.render()
        return report

    async def _send_checked(self, report: DeliveryReport, envelope: Envelope,
                            message: bytes | MessageBody) -> None:
        try:
            with self._mapped():
                await self._transaction(report, envelope, message)
        except SessionError as exc:
            report.failure = exc.failure

    async def _transaction(self, report: DeliveryReport, envelope: Envelope,
                           message: bytes | MessageBody) -> None:
        if self.info.offers("pipelining"):
            await self._pipelined(report, envelope, message)
            return
        self._stage = Stage.MAIL
        report.mail_reply = await self._reply(*mail_command(envelope, message, self.info))
        if not report.mail_reply.is_success:
            return
        self._stage = Stage.RCPT
        for recipient, wire in envelope.recipients:
            reply = await self._reply(b"RCPT", b"TO:" + wire)
            report.rcpt_replies[recipient] = reply
            if reply.code == ReplyCode.SERVICE_NOT_AVAILABLE:
                raise SessionError(SessionFailure(Stage.RCPT, reply=reply))
        if any(reply.is_success for reply in report.rcpt_replies.values()):
            self._stage = Stage.DATA
            response = await self._command(b"DATA")
            await self._after_data_command(report, message, response)

    async def _pipelined(self, report: DeliveryReport, envelope: Envelope,
                         message: bytes | MessageBody) -> None:
        """RFC 2920: MAIL, every RCPT and DATA in one write, then their replies in
        order; the same report as one command at a time."""
        commands = [mail_command(envelope, message, self.info),
                    *((b"RCPT", b"TO:" + wire) for _, wire in envelope.recipients), (b"DATA",)]
        self._stage = Stage.MAIL
        protocol = self._protocol()
        replies = PipelinedReplies(protocol)
        try:
            protocol.write(b"".join(b" ".join(parts) + b"\r\n" for parts in commands))
            self.transcript.note("PIPELINING: MAIL, RCPT and DATA sent together")
            report.mail_reply = parse_reply(*await self._pipelined_reply(replies, commands[0]))
            if not report.mail_reply.is_success:
                self._hang_up("the relay refused MAIL")
                return
            self._stage = Stage.RCPT
            for (recipient, _), parts in zip(envelope.recipients, commands[1:-1], strict=True):
                reply = parse_reply(*await self._pipelined_reply(replies, parts))
                report.rcpt_replies[recipient] = reply
                if reply.code == ReplyCode.SERVICE_NOT_AVAILABLE:
                    raise SessionError(SessionFailure(Stage.RCPT, reply=reply))
            self._stage = Stage.DATA
            data = await self._pipelined_reply(replies, commands[-1])
        finally:
            self._broken |= not replies.release()
        if any(reply.is_success for reply in report.rcpt_replies.values()):
            await self._after_data_command(report, message, data)
        elif data.code == ReplyCode.START_MAIL_INPUT:
            self._hang_up("the relay took DATA with no recipient accepted")

    async def _pipelined_reply(self, replies: PipelinedReplies,
                               parts: tuple[bytes, ...]) -> aiosmtplib.SMTPResponse:
        self.transcript.client(b" ".join(parts).decode("utf-8", "replace"))
        response = await replies.next(self._command_timeout)
        self._record(response)
        return response

    def _hang_up(self, why: str) -> None:
        """Leave a pipelined group whose other replies no longer matter."""
        self.abort()
        self.transcript.note(f"{why}: hung up, nothing was sent")

    async def _after_data_command(self, report: DeliveryReport, message: bytes | MessageBody,
                                  response: aiosmtplib.SMTPResponse) -> None:
        """The body after a 354, and the relay's word on it."""
        if 200 <= response.code < 300:  # "sent" without a body: the relay is out of step
            raise SessionError(SessionFailure(
                Stage.DATA, condition=Condition.PROTOCOL_ERROR,
                detail=f"the relay answered DATA with {response.code} instead of 354"))
        if response.code != ReplyCode.START_MAIL_INPUT:
            report.data_reply = parse_reply(response.code, response.message)
            return
        self.transcript.data(size_of(message))
        await self._write_message(message)
        report.data_sent = True
        self._stage = Stage.AFTER_DATA
        self.transcript.client(".")
        response = await self._protocol().read_response(
            timeout=self._delivery.data_timeout.total_seconds())
        self._record(response)
        report.data_reply = parse_reply(response.code, response.message)
        self._finished = True

    async def _write_message(self, message: bytes | MessageBody) -> None:
        """The body and the final "."; no progress for `command_timeout` is a
        stall (`data.DataStalled`). Whatever stops it part way, the session
        hangs up at once, so the relay never sees the final "."."""
        protocol, progress_timeout = self._protocol(), self._command_timeout
        try:
            if isinstance(message, bytes):
                await write_data(protocol, dot_stuff(message), progress_timeout=progress_timeout)
            else:
                await write_body(protocol, message, progress_timeout=progress_timeout)
        except BaseException:
            self.abort()
            self.transcript.note('hung up mid-message: the final "." was never sent')
            raise

    # reuse and close -------------------------------------------------------------

    async def reset(self) -> bool:
        """RSET before the next message; False if the session is not usable.
        The RSET lines open the next message's part of the transcript. With
        PIPELINING, a transaction that ended with the reply to its final "."
        needs none (RFC 5321 4.1.1.4: that reply resets the relay's state), so
        the next message costs two round trips, not three."""
        self._open_section()
        self._section_open = True
        if not self.is_usable:
            return False
        if self._finished and self.info.offers("pipelining"):
            return True
        try:
            with self._mapped():
                response = await self._command(b"RSET")
        except SessionError:
            return False
        if response.code != ReplyCode.OK:
            self._broken = True
        return self.is_usable


async def open_session(relay: RelaySettings, delivery: DeliverySettings, *,
                       authenticators: Sequence[Authenticator] | None = None) -> SmtpSession:
    """A session that is connected, greeted, encrypted and authenticated as
    configured. Raises `SessionError` (with `.failure` and `.transcript`)."""
    session = SmtpSession(relay, delivery, authenticators)
    await session.setup()
    return session
