"""`SmtpConnection`: what a session stands on. The aiosmtplib client, the
transcript, and the plumbing every command goes through: one command and its
recorded reply, errors mapped to the stage (`errors.map_smtp_errors`), a
polite close and a hard abort. `SmtpSession` adds setup and the messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.model import Reply
from outbox.core.replies import ReplyCode, parse_reply
from outbox.core.report import SessionFailure, Stage
from outbox.delivery.smtp.errors import SessionError, map_smtp_errors
from outbox.delivery.smtp.info import SessionInfo
from outbox.delivery.transcript import Transcript
from outbox.transports import writable

_QUIT_TIMEOUT = 5.0


class SmtpConnection:
    """One connection to a relay and its transcript (`secrets` never reach it)."""

    def __init__(self, relay: RelaySettings, delivery: DeliverySettings,
                 secrets: Iterable[str]) -> None:
        self.relay = relay
        self._delivery = delivery
        self.transcript = Transcript(set(secrets))
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
        """Close the connection at once, without QUIT, dropping unsent bytes."""
        self._broken = True
        if self._smtp is None:
            return
        transport = writable(self._smtp.transport)
        if transport is not None:
            # close() would keep the socket open to flush the buffer into a
            # relay that may never read it; abort() discards it now.
            transport.abort()
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
