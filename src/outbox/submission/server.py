"""The listener: aiosmtpd's SMTP protocol with Outbox's connection rules, on a socket
bound at start-up, in the process's own event loop.

    sock = bind_socket(settings.submission)          # a taken port: one ConfigError line
    listener = SubmissionListener(outbox, sock)
    await listener.start()
    ...
    await listener.close(grace=5)                    # finish DATA under way, then 421

Per connection: AUTH required before MAIL, except from `trusted_networks` (whose
clients are logged in as `trusted_key` at MAIL), and the key checked again at every
MAIL, so a revoked key sends no more; AUTH before TLS only where
`SubmissionSettings.auth_needs_tls` allows it; SIZE advertised and enforced
from `[limits] max_message_size` (refused at MAIL when declared, else after the
final dot, with the same 552 5.3.4); a client silent for `command_timeout` is
disconnected; after `max_errors` 4xx/5xx replies the connection is closed with 421;
more than `max_connections` at once get 421 at the greeting.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

import structlog
from aiosmtpd.smtp import MISSING, SMTP, syntax

from outbox.config import SubmissionSettings
from outbox.core.addresses import ATEXT
from outbox.errors import ConfigError
from outbox.listening import listen
from outbox.service import Outbox
from outbox.submission import auth, replies
from outbox.submission.handler import SubmissionHandler
from outbox.submission.spool import DataState, read_data
from outbox.transports import writable

log = structlog.get_logger("outbox.submission")

IDENT = "Outbox ESMTP submission"
_SIZE = re.compile(r"(?:^|\s)SIZE=(\d+)(?:\s|$)", re.IGNORECASE)
# The common argument: "<local@domain>", an ASCII dot-atom local part and a host name,
# which the stdlib's parser reads as written. Anything else (quotes, comments, domain
# literals, UTF-8, ...) goes to the parser.
_ATOM = f"[{re.escape(ATEXT)}]+"
_PLAIN_ANGLE_ADDR = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


def declared_size(arg: str | None) -> int | None:
    """The SIZE= a MAIL command declares, if any (RFC 1870)."""
    match = _SIZE.search(arg or "")
    return int(match.group(1)) if match else None


def bind_socket(settings: SubmissionSettings) -> socket.socket:
    """The listening socket, bound now so that a taken port is one clear line."""
    return listen("submission", settings.bind, settings.host, settings.port, backlog=512)


def tls_context(settings: SubmissionSettings) -> ssl.SSLContext | None:
    """The server's TLS context from cert_file and key_file (None with security none)."""
    if settings.security == "none":
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.cert_file, settings.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"submission.cert_file: cannot use {settings.cert_file} "
                          f"{'and ' + settings.key_file + ' ' if settings.key_file else ''}"
                          f"as a certificate and its key: {exc}") from None
    return context


class SubmissionSMTP(SMTP):
    """One client connection: aiosmtpd's protocol plus Outbox's limits."""

    def __init__(self, listener: SubmissionListener, **options: Any) -> None:
        super().__init__(listener.handler, **options)
        # aiosmtpd warns on every connection when AUTH is required without TLS; the
        # rule (TLS first unless the bind is loopback) is decided by the settings.
        self._auth_require_tls = listener.settings.auth_needs_tls
        self.listener = listener
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Counted once connected, not when the listener makes the protocol: a TLS
        # handshake that fails never reaches here, nor connection_lost, and must not
        # keep a slot.
        self.listener.connections.add(self)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._reset_timeout()  # a client that sends is not idle, even within a long DATA

    def connection_lost(self, error: Exception | None) -> None:
        self.listener.forget(self)
        super().connection_lost(error)

    async def push(self, status: Any) -> None:  # str or bytes, as aiosmtpd's
        await super().push(status)
        code = status[:3] if isinstance(status, str) else bytes(status[:3]).decode("latin-1")
        if code[:1] in ("4", "5") and code != "421":
            self.errors += 1
            if self.errors >= self.listener.settings.max_errors and self.transport is not None:
                await super().push(replies.too_many_errors(self.hostname))
                self.transport.close()

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        """Log a client of trusted_networks in as trusted_key (unless it logged in
        itself), or check the session's key again; refuse a declared SIZE over the limit
        with its enhanced code (5.3.4)."""
        refusal = await self._check_login()
        if refusal is not None:
            await self.push(refusal)
            return
        declared = declared_size(arg)
        limit = self.data_size_limit
        session = self.session
        if (declared is not None and limit and declared > limit and session is not None
                and session.host_name and session.authenticated):
            await self.push(replies.size_exceeded(limit))
            return
        await super().smtp_MAIL(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's, reading into `spool.Data` (a temporary file past SPOOL_AT bytes)
        instead of a list of every line joined at the end: the same checks, limits and
        replies, with the message handed to the handler as `envelope.data`."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            state, data = await read_data(self._reader, self.data_size_limit,
                                          self.line_length_limit)
        except asyncio.CancelledError:  # the connection was reset during DATA
            self._writer.close()
            raise
        try:
            if state is DataState.LINE_TOO_LONG:
                await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            elif state is DataState.TOO_MUCH:  # as a SIZE declared at MAIL is refused
                await self.push(replies.size_exceeded(self.data_size_limit or 0))
            else:
                self.envelope.data = data  # type: ignore[attr-defined]
                if not data.spooled:
                    self.envelope.original_content = self.envelope.content = data.content()
                status = await self._call_handler_hook("DATA")
                self._set_post_data_state()
                await self.push("250 OK" if status is MISSING else status)
                return
            self._set_post_data_state()
        finally:
            data.close()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's answers, without the typing Protocol class it defines at every call
        and, for the common argument, without the stdlib's parser (`_plain_address`):
        the address of a MAIL or RCPT argument and what follows it; (None, None) when it
        does not parse (aiosmtpd's raised on "MAIL FROM:<" and on "MAIL FROM:a@[", and
        answered 500; now 553 5.1.3) or its local part is over local_part_limit."""
        if not arg:
            return "", ""
        parsed = _plain_address(arg) or _parsed_address(arg)
        if parsed is None:
            return None, None
        found, rest = parsed
        if self.local_part_limit and len(found.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return found, rest

    async def _check_login(self) -> str | None:
        """Why this MAIL is refused, if it is: a trusted client is logged in as
        trusted_key, and a session that logged in earlier is checked again (its key may
        have been revoked since). None otherwise; aiosmtpd says 530 to one not logged in."""
        keys = self.listener.outbox.keys
        if self._is_trusted():
            return await auth.trusted_login(keys, self, self.listener.settings.trusted_key)
        if self.session is not None and self.session.authenticated:
            return await auth.recheck(keys, self)
        return None

    def _is_trusted(self) -> bool:
        """Whether this client, not logged in, is on submission.trusted_networks."""
        session = self.session
        if session is None or session.authenticated or not session.host_name:
            return False  # before HELO/EHLO, aiosmtpd's own reply comes first
        peer = session.peer
        return isinstance(peer, tuple) and self.listener.settings.is_trusted(str(peer[0]))

    def hang_up(self, reply: str) -> None:
        """Say `reply` (a 421) and close, without waiting for the client."""
        transport = writable(self.transport)
        if transport is not None and not transport.is_closing():
            transport.write(reply.encode("ascii") + b"\r\n")
            transport.close()


class _Refusal(asyncio.Protocol):
    """A connection over max_connections: 421 at the greeting, then closed."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = writable(transport)
        assert writer is not None
        writer.write(self.reply.encode("ascii") + b"\r\n")
        writer.close()


class SubmissionListener:
    def __init__(self, outbox: Outbox, sock: socket.socket) -> None:
        self.outbox = outbox
        self.settings = outbox.settings.submission
        self.sock = sock
        self.handler = SubmissionHandler(outbox)
        self.hostname = self.settings.hostname or socket.gethostname()
        self.context = tls_context(self.settings)
        self.connections: set[SubmissionSMTP] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        implicit = self.context if self.settings.security == "tls" else None
        self._server = await asyncio.get_running_loop().create_server(
            self._connection, sock=self.sock, ssl=implicit)
        log.info("smtp submission listening", bind=self.settings.bind,
                 security=self.settings.security, auth_needs_tls=self.settings.auth_needs_tls)

    def _connection(self) -> asyncio.Protocol:
        if len(self.connections) >= self.settings.max_connections:
            return _Refusal(replies.too_many_connections(self.hostname))
        starttls = self.context if self.settings.security == "starttls" else None
        return SubmissionSMTP(
            self, data_size_limit=self.outbox.settings.limits.max_message_size,
            enable_SMTPUTF8=True, hostname=self.hostname, ident=IDENT, tls_context=starttls,
            timeout=self.settings.command_timeout.total_seconds(), auth_required=True,
            loop=asyncio.get_running_loop())

    def forget(self, protocol: SubmissionSMTP) -> None:
        self.connections.discard(protocol)

    async def close(self, grace: float) -> None:
        """Stop accepting; let messages under way reach their reply (up to `grace`
        seconds), then say 421 to every client still connected."""
        if self._server is not None:
            self._server.close()
        try:
            await asyncio.wait_for(self.handler.idle.wait(), grace)
        except TimeoutError:
            log.warning("smtp submission stopped with messages under way",
                        in_flight=self.handler.in_flight)
        for protocol in list(self.connections):
            protocol.hang_up(replies.shutting_down(self.hostname))
        self.sock.close()


def _plain_address(arg: str) -> tuple[str, str] | None:
    """The parser's answer for the common argument: the address, and what follows it
    less the blanks after the ">" (the parser takes those as folding white space). None
    where the parser must read it (a comment after it). About 1 us against the parser's
    23-35, timed alone; a message's MAIL and RCPT were about 2 % of the listener's
    samples under smtp-source (issue 15)."""
    plain = _PLAIN_ANGLE_ADDR.match(arg)
    if plain is None:
        return None
    rest = arg[plain.end():].lstrip(" \t")
    return None if rest.startswith("(") else (plain.group(1), rest)


def _parsed_address(arg: str) -> tuple[str, str] | None:
    """The address of a MAIL or RCPT argument and what follows it, by the stdlib's
    parser as aiosmtpd reads them; None where it does not parse."""
    try:
        address, rest = (get_angle_addr(arg) if arg.lstrip().startswith("<")
                         else get_addr_spec(arg))
        return str(address.addr_spec), str(rest)
    # The stdlib's own errors: IndexError on a lone "<", AttributeError on an
    # unclosed domain literal ("a@[": a defect where it expects a token).
    except (HeaderParseError, IndexError, AttributeError):
        return None
