"""One SMTP session to one relay. The only module that imports aiosmtplib.

The transport reports and never decides (STYLE principle 1): it drives MAIL,
RCPT and DATA itself, records every reply in a `DeliveryReport`, and leaves
"permanent or transient" to `core.classify`. Foreign exceptions (aiosmtplib,
OSError, ssl, timeouts) become a `SessionFailure` in one place,
`map_smtp_errors`, which names the stage the session was in.

    session = await open_session(relay, delivery)   # connect, EHLO, TLS, AUTH
    report = await session.send(sender, recipients, message)
    if await session.reset(): ...                     # RSET, ready for the next
    await session.close()
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import aclosing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.esmtp import parse_esmtp_extensions
from aiosmtplib.protocol import PERIOD_REGEX, SMTPProtocol, normalize_message_line_endings

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.model import Reply
from outbox.core.replies import ReplyCode, parse_reply
from outbox.core.report import Condition, DeliveryReport, SessionFailure, Stage
from outbox.delivery import tls
from outbox.delivery.auth import AuthChannel as AuthChannel
from outbox.delivery.auth import Authenticator, authenticators_for
from outbox.delivery.auth import LoginAuth as LoginAuth
from outbox.delivery.auth import PlainAuth as PlainAuth
from outbox.delivery.body import DotStuffer, MessageBody
from outbox.delivery.oauth import TokenError
from outbox.delivery.transcript import Transcript
from outbox.errors import BodyUnavailable, DeliveryError

_DATA_CHUNK = 64 * 1024
_FINAL_DOT = b".\r\n"
_QUIT_TIMEOUT = 5.0
_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL})
_FQDN: dict[str, str] = {}


class SessionError(DeliveryError):
    """The SMTP session failed."""

    code = "smtp_session_failed"

    def __init__(self, failure: SessionFailure, transcript: str = "") -> None:
        what = failure.reply or failure.condition or "failed"
        super().__init__(f"{failure.stage.value}: {what}")
        self.failure = failure
        self.transcript = transcript


# --- the one place foreign exceptions are translated --------------------------------

@contextmanager
def map_smtp_errors(stage: Callable[[], Stage]) -> Iterator[None]:
    """Turn aiosmtplib, socket, ssl and timeout errors into `SessionError`;
    `stage()` says where the session was when it happened."""
    try:
        yield
    except SessionError:
        raise
    except TokenError as exc:  # no access token for XOAUTH2: the endpoint's word, no reply
        raise SessionError(SessionFailure(stage(), condition=exc.condition,
                                          detail=exc.message)) from exc
    except BodyUnavailable as exc:  # the message's own content failed us, not the relay
        raise SessionError(SessionFailure(stage(), condition=Condition(exc.condition),
                                          detail=exc.message)) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise SessionError(failure_for(exc, stage())) from exc


def failure_for(exc: BaseException, stage: Stage) -> SessionFailure:
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        stage = Stage.GREETING
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        return SessionFailure(stage, reply=parse_reply(exc.code, exc.message))
    return SessionFailure(stage, condition=condition_for(exc, stage), detail=_describe(exc))


def condition_for(exc: BaseException, stage: Stage) -> Condition:
    """The most specific condition found along the exception's cause chain."""
    for link in _causes(exc):
        condition = _link_condition(link, stage)
        if condition is not None:
            return condition
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return Condition.CONNECTION_REFUSED
    return Condition.PROTOCOL_ERROR


def _link_condition(link: BaseException, stage: Stage) -> Condition | None:
    if isinstance(link, ssl.SSLError):
        return tls.condition_for(link)
    if isinstance(link, socket.gaierror):
        return Condition.DNS_FAILURE
    if isinstance(link, ConnectionRefusedError):
        return Condition.CONNECTION_REFUSED
    if isinstance(link, TimeoutError):
        connecting = stage is Stage.CONNECT or isinstance(link, aiosmtplib.SMTPConnectError)
        return Condition.CONNECTION_TIMEOUT if connecting else Condition.COMMAND_TIMEOUT
    if type(link) is aiosmtplib.SMTPConnectError:
        return None  # a wrapper: the cause says what happened
    if isinstance(link, ConnectionError | asyncio.IncompleteReadError):
        return Condition.CONNECTION_DROPPED
    if isinstance(link, OSError) and link.errno in _UNREACHABLE:
        return Condition.NETWORK_UNREACHABLE
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _describe(exc: BaseException) -> str:
    for link in _causes(exc):
        if isinstance(link, ssl.SSLError):
            return tls.describe(link)
    return str(exc) or type(exc).__name__


# --- session ------------------------------------------------------------------------

@dataclass(slots=True)
class SessionInfo:
    """What the relay told us while the session was set up."""

    greeting: Reply | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    auth_mechanisms: tuple[str, ...] = ()
    tls_version: str | None = None
    cipher: str | None = None
    auth_mechanism: str | None = None
    certificate_expires: datetime | None = None  # a verified certificate's notAfter

    @property
    def size_limit(self) -> int | None:
        value = self.extensions.get("size", "").strip()
        return int(value) if value.isdigit() and int(value) > 0 else None

    def offers(self, extension: str) -> bool:
        return extension.lower() in self.extensions


class SmtpSession:
    """An open, set-up SMTP session; one message at a time."""

    def __init__(self, relay: RelaySettings, delivery: DeliverySettings,
                 authenticators: Sequence[Authenticator] | None = None) -> None:
        self.relay = relay
        self._delivery = delivery
        self._authenticators = (list(authenticators) if authenticators is not None
                                else authenticators_for(relay))
        secrets = {s for auth in self._authenticators for s in auth.secrets}
        self.transcript = Transcript(secrets)
        self.info = SessionInfo()
        self.messages_sent = 0
        self.last_used = time.monotonic()
        self._smtp: aiosmtplib.SMTP | None = None
        self._stage = Stage.CONNECT
        self._broken = False
        self._section_open = False

    @property
    def is_usable(self) -> bool:
        return not self._broken and self._smtp is not None and self._smtp.is_connected

    @property
    def is_tls(self) -> bool:
        return self.info.tls_version is not None

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
        self._smtp = aiosmtplib.SMTP(
            hostname=self.relay.host, port=self.relay.port, start_tls=False,
            local_hostname=await local_hostname(self._delivery.helo_name),
            timeout=self._delivery.connect_timeout.total_seconds(), use_tls=implicit,
            tls_context=tls.client_context(self.relay) if implicit else None)
        response = await self._smtp.connect()
        self.transcript.server(response.code, response.message)
        self.info.greeting = parse_reply(response.code, response.message)
        if implicit:
            self._note_tls()

    async def _ehlo(self) -> None:
        self._stage = Stage.EHLO
        name = (await local_hostname(self._delivery.helo_name)).encode("ascii", "replace")
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
        authenticator = self._choose_authenticator()
        reply = await authenticator.authenticate(self)
        if reply.code != ReplyCode.AUTH_SUCCESSFUL:
            raise SessionError(SessionFailure(Stage.AUTH, reply=reply))
        self.info.auth_mechanism = authenticator.mechanism

    def _choose_authenticator(self) -> Authenticator:
        if not (self.is_tls or is_loopback(self.relay.host) or self.relay.allow_insecure_auth):
            raise _auth_failure(Condition.AUTH_NEEDS_TLS, "AUTH is only sent over TLS; use "
                                "security = \"starttls\" or \"tls\" (or allow_insecure_auth)")
        offered = self.info.auth_mechanisms
        for authenticator in self._authenticators:
            if authenticator.mechanism in offered:
                return authenticator
        ours = ", ".join(a.mechanism for a in self._authenticators)
        raise _auth_failure(Condition.AUTH_NOT_OFFERED,
                            f"the relay offers {', '.join(offered) or 'no AUTH'}; Outbox "
                            + (f"can use {ours}" if ours else "has no mechanism for these "
                               "credentials"))

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
        self.info.certificate_expires = _not_after(smtp.get_transport_info("peercert"))
        self.transcript.note(f"TLS established ({self.info.tls_version}, {self.info.cipher})")

    # one message -----------------------------------------------------------------

    async def send(self, sender: str, recipients: Sequence[str],
                   message: bytes | MessageBody) -> DeliveryReport:
        """MAIL, RCPT for each recipient, DATA; every reply in the report.
        Never raises for an SMTP or network reason: see `report.failure`.
        `message`: the bytes, or a body streamed in chunks (`delivery.body`)."""
        report = DeliveryReport(relay=self.relay.name, recipients=tuple(recipients))
        self._open_section()
        prepared = self._prepare(sender, recipients, message)
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

    def _prepare(self, sender: str, recipients: Sequence[str],
                 message: bytes | MessageBody) -> _Envelope | SessionFailure:
        """Checks that need no command (SIZE, SMTPUTF8, address syntax): a
        failure here sends nothing and leaves the session usable."""
        limit = self.info.size_limit
        if limit is not None and size_of(message) > limit:
            return SessionFailure(Stage.SIZE_CHECK, condition=Condition.MESSAGE_TOO_BIG,
                                  detail=f"the message is {size_of(message)} bytes; "
                                  f"{self.relay.host} accepts at most {limit}")
        try:
            envelope = _Envelope.build(sender, recipients)
        except ValueError as exc:
            return SessionFailure(Stage.MAIL, condition=Condition.PROTOCOL_ERROR, detail=str(exc))
        if envelope.utf8 and not self.info.offers("smtputf8"):
            return SessionFailure(Stage.MAIL, condition=Condition.SMTPUTF8_REQUIRED,
                                  detail="an address is not ASCII and the relay does not "
                                  "offer SMTPUTF8")
        return envelope

    async def _send_checked(self, report: DeliveryReport, envelope: _Envelope,
                            message: bytes | MessageBody) -> None:
        try:
            with self._mapped():
                await self._transaction(report, envelope, message)
        except SessionError as exc:
            report.failure = exc.failure

    async def _transaction(self, report: DeliveryReport, envelope: _Envelope,
                           message: bytes | MessageBody) -> None:
        self._stage = Stage.MAIL
        report.mail_reply = await self._mail(envelope, message)
        if not report.mail_reply.is_success:
            return
        self._stage = Stage.RCPT
        for recipient, wire in envelope.recipients:
            reply = await self._reply(b"RCPT", b"TO:" + wire)
            report.rcpt_replies[recipient] = reply
            if reply.code == ReplyCode.SERVICE_NOT_AVAILABLE:
                raise SessionError(SessionFailure(Stage.RCPT, reply=reply))
        if any(reply.is_success for reply in report.rcpt_replies.values()):
            await self._data(report, message)

    async def _mail(self, envelope: _Envelope, message: bytes | MessageBody) -> Reply:
        options = []
        if self.info.offers("size"):
            options.append(b"SIZE=%d" % size_of(message))
        if envelope.utf8:
            options.append(b"SMTPUTF8")
        eight_bit = not message.isascii() if isinstance(message, bytes) else message.eight_bit
        if self.info.offers("8bitmime") and eight_bit:
            options.append(b"BODY=8BITMIME")
        return await self._reply(b"MAIL", b"FROM:" + envelope.sender, *options)

    async def _data(self, report: DeliveryReport, message: bytes | MessageBody) -> None:
        self._stage = Stage.DATA
        response = await self._command(b"DATA")
        if response.code != ReplyCode.START_MAIL_INPUT:
            report.data_reply = parse_reply(response.code, response.message)
            return
        self.transcript.data(size_of(message))
        if isinstance(message, bytes):
            await write_data(self._protocol(), dot_stuff(message))
        else:
            await self._stream_body(message)
        report.data_sent = True
        self._stage = Stage.AFTER_DATA
        self.transcript.client(".")
        response = await self._protocol().read_response(
            timeout=self._delivery.data_timeout.total_seconds())
        self._record(response)
        report.data_reply = parse_reply(response.code, response.message)

    async def _stream_body(self, body: MessageBody) -> None:
        try:
            await write_body(self._protocol(), body)
        except BodyUnavailable:
            self.abort()  # hang up mid-body: the relay must never see the final "."
            raise

    # reuse and close -------------------------------------------------------------

    async def reset(self) -> bool:
        """RSET before the next message; False if the session is not usable.
        The RSET lines open the next message's part of the transcript."""
        self._open_section()
        self._section_open = True
        if not self.is_usable:
            return False
        try:
            with self._mapped():
                response = await self._command(b"RSET")
        except SessionError:
            return False
        if response.code != ReplyCode.OK:
            self._broken = True
        return self.is_usable

    async def close(self) -> None:
        """QUIT politely when the session is healthy, then close."""
        smtp = self._smtp
        try:
            if smtp is not None and self.is_usable:
                with suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                    await smtp.quit(timeout=min(self._command_timeout, _QUIT_TIMEOUT))
        finally:
            self.abort()
        await asyncio.sleep(0)  # let the transport finish closing

    def abort(self) -> None:
        """Close the connection at once, without QUIT."""
        self._broken = True
        if self._smtp is not None:
            self._smtp.close()

    # plumbing --------------------------------------------------------------------

    @property
    def _command_timeout(self) -> float:
        return self._delivery.command_timeout.total_seconds()

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            with map_smtp_errors(lambda: self._stage):
                yield
        except SessionError as exc:
            self._broken = True
            self.transcript.failure(exc.failure)
            raise

    def _open_section(self) -> None:
        if not self._section_open:
            self.transcript.begin_message()

    async def _command(self, *parts: bytes) -> aiosmtplib.SMTPResponse:
        self.transcript.client(b" ".join(parts).decode("utf-8", "replace"))
        response = await self._smtp_client().execute_command(*parts,
                                                             timeout=self._command_timeout)
        self._record(response)
        return response

    async def _reply(self, *parts: bytes) -> Reply:
        response = await self._command(*parts)
        return parse_reply(response.code, response.message)

    def _record(self, response: aiosmtplib.SMTPResponse) -> None:
        self.transcript.server(response.code, response.message)
        if response.code == ReplyCode.SERVICE_NOT_AVAILABLE:
            self._broken = True  # the server is closing the connection

    def _check(self, response: aiosmtplib.SMTPResponse, expected: int) -> None:
        if response.code != expected:
            raise SessionError(SessionFailure(self._stage,
                                              reply=parse_reply(response.code, response.message)))

    def _smtp_client(self) -> aiosmtplib.SMTP:
        if self._smtp is None:
            raise aiosmtplib.SMTPServerDisconnected("not connected")
        return self._smtp

    def _protocol(self) -> SMTPProtocol:
        protocol = self._smtp_client().protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        return protocol


def _not_after(certificate: object) -> datetime | None:
    """When a verified peer certificate expires (unverified ones carry no fields)."""
    if not isinstance(certificate, dict) or "notAfter" not in certificate:
        return None
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(certificate["notAfter"]), UTC)


def _auth_failure(condition: Condition, detail: str) -> SessionError:
    return SessionError(SessionFailure(Stage.AUTH, condition=condition, detail=detail))


@dataclass(frozen=True, slots=True)
class _Envelope:
    """Sender and recipients as they go on the wire."""

    sender: bytes
    recipients: tuple[tuple[str, bytes], ...]
    utf8: bool

    @classmethod
    def build(cls, sender: str, recipients: Sequence[str]) -> _Envelope:
        """Raises ValueError for an address that cannot go on a command line."""
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        encoding = "utf-8" if utf8 else "ascii"
        return cls(quote_address(sender).encode(encoding),
                   tuple((r, quote_address(r).encode(encoding)) for r in recipients), utf8)


# --- DATA ---------------------------------------------------------------------------

def dot_stuff(message: bytes) -> bytes:
    """CRLF line endings, a final CRLF, and a "." doubled at the start of a line.
    (A streamed body will do this per chunk, carrying the line state across.)"""
    message = normalize_message_line_endings(message)
    if message.startswith(b".") or b"\n." in message:
        message = PERIOD_REGEX.sub(b"..", message)
    return message


async def write_data(protocol: SMTPProtocol, body: bytes) -> None:
    """Write an already dot-stuffed body and the final ".", with back-pressure.

    Returns the moment the final "." has been handed to the connection: from
    then on the relay may have the message. Raises before that if the
    connection is lost, so an early drop is never mistaken for "sent".
    """
    # aiosmtplib drops a reply that arrives while no read is pending; a relay
    # may answer before the body is done (a 552 mid-stream), so arm it now.
    protocol._response_pending = True
    view = memoryview(body)
    tail_start = max(len(view) - _DATA_CHUNK, 0)
    for start in range(0, tail_start, _DATA_CHUNK):
        protocol.write(bytes(view[start:min(start + _DATA_CHUNK, tail_start)]))
        await protocol._drain_helper()
    if not protocol.is_connected:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost during DATA")
    protocol.write(bytes(view[tail_start:]) + _FINAL_DOT)


async def write_body(protocol: SMTPProtocol, body: MessageBody) -> None:
    """Stream a body chunk by chunk, dot-stuffed across chunk boundaries, then the
    final "." (the same promises as `write_data`). If the body raises part way,
    the exception propagates and the final "." is never written."""
    protocol._response_pending = True  # as in write_data: an early reply is kept
    stuffer = DotStuffer()
    async with aclosing(body.chunks()) as chunks:
        async for chunk in chunks:
            protocol.write(stuffer.feed(chunk))
            await protocol._drain_helper()
    if not protocol.is_connected:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost during DATA")
    protocol.write(stuffer.finish() + _FINAL_DOT)


def size_of(message: bytes | MessageBody) -> int:
    return len(message) if isinstance(message, bytes) else message.size


# --- helpers ------------------------------------------------------------------------

async def local_hostname(helo_name: str) -> str:
    """The EHLO name: the configured one, else this host's FQDN, looked up
    once per process (off the event loop) so DNS never slows a session."""
    if helo_name:
        return helo_name
    if "fqdn" not in _FQDN:
        _FQDN["fqdn"] = await asyncio.to_thread(socket.getfqdn) or "localhost"
    return _FQDN["fqdn"]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: AUTH may go there without TLS."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def open_session(relay: RelaySettings, delivery: DeliverySettings, *,
                       authenticators: Sequence[Authenticator] | None = None) -> SmtpSession:
    """A session that is connected, greeted, encrypted and authenticated as
    configured. Raises `SessionError` (with `.failure` and `.transcript`)."""
    session = SmtpSession(relay, delivery, authenticators)
    await session.setup()
    return session


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What `outbox doctor` and `smtp-test` show about a relay."""

    relay: str
    failure: SessionFailure | None
    info: SessionInfo
    transcript: str

    @property
    def ok(self) -> bool:
        return self.failure is None


async def probe(relay: RelaySettings, delivery: DeliverySettings, *,
                authenticators: Sequence[Authenticator] | None = None) -> ProbeResult:
    """Connect, EHLO, TLS and AUTH without sending anything, then QUIT."""
    session = SmtpSession(relay, delivery, authenticators)
    try:
        await session.setup()
    except SessionError as exc:
        return ProbeResult(relay.name, exc.failure, session.info, exc.transcript)
    await session.close()
    return ProbeResult(relay.name, None, session.info, session.transcript.render())
