"""The bounce listener: an SMTP server for `[bounces] domain` (its MX, or a forwarding
rule, points here) that takes delivery status notifications, feedback reports and
whatever else comes back to the VERP return paths.

No AUTH: it is an MX. RCPT is accepted only for the bounce mailbox
(`<local_part>[+token]@<domain>`), anything else gets 550 5.7.1 (never an open
relay). After DATA the message is applied (`service.bounces.Bounces.receive`) and
only then answered 250; a database that fails gets 451 (the sender's MTA tries
again), a message that is not a message at all 554.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from outbox.config import BounceSettings
from outbox.core.bounces import MAX_BOUNCE_SIZE
from outbox.errors import BounceUnreadable, InputError, OutboxError
from outbox.listening import listen
from outbox.service import Outbox

log = structlog.get_logger("outbox.intake")

IDENT = "Outbox bounce intake"
COMMAND_TIMEOUT = 300.0  # seconds a silent client keeps its connection (RFC 5321 4.5.3.2)


def bind_bounce_socket(settings: BounceSettings) -> socket.socket:
    """The listening socket, bound now so that a taken port is one clear line."""
    return listen("bounces", settings.bind, settings.host, settings.port, backlog=128)


class BounceHandler:
    """aiosmtpd hooks: RCPT only for the bounce mailbox, DATA applied before 250."""

    def __init__(self, outbox: Outbox) -> None:
        self.bounces = outbox.bounces

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if not self.bounces.accepts(address):
            return f"550 5.7.1 <{address}>: this server only takes bounces"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            result = await self.bounces.receive(bytes(raw), list(envelope.rcpt_tos))
        except BounceUnreadable as exc:
            return f"554 5.6.0 {exc.message}"
        except InputError as exc:
            return f"554 5.6.0 {exc.message}"
        except OutboxError as exc:
            log.warning("bounce not recorded; the sender will try again", error=exc.one_line())
            return "451 4.3.0 Outbox cannot record this now; try again later"
        return f"250 2.0.0 OK: {result.kind.value}, {len(result.recorded)} recipient(s)"


class BounceListener:
    def __init__(self, outbox: Outbox, sock: socket.socket) -> None:
        self.outbox = outbox
        self.sock = sock
        self.handler = BounceHandler(outbox)
        self.hostname = outbox.settings.bounces.domain or socket.gethostname()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            self._connection, sock=self.sock)
        log.info("bounce listener listening", bind=self.outbox.settings.bounces.bind,
                 domain=self.outbox.settings.bounces.domain)

    def _connection(self) -> SMTP:
        options: dict[str, Any] = {"data_size_limit": MAX_BOUNCE_SIZE, "enable_SMTPUTF8": True,
                                   "hostname": self.hostname, "ident": IDENT,
                                   "timeout": COMMAND_TIMEOUT,
                                   "loop": asyncio.get_running_loop()}
        return SMTP(self.handler, **options)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.sock.close()
