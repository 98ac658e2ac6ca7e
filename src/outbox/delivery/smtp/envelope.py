"""The envelope on the wire, and the checks that need no command.

`prepare` either returns the `Envelope` (sender and recipients quoted and
encoded for MAIL and RCPT) or a `SessionFailure` for a message that must not
be started at all: bigger than the relay's SIZE, an address that cannot go
on a command line, or a non-ASCII address for a relay without SMTPUTF8.
Such a failure sends nothing and leaves the session usable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from aiosmtplib.email import quote_address

from outbox.core.report import Condition, SessionFailure, Stage
from outbox.delivery.body import MessageBody
from outbox.delivery.smtp.data import size_of
from outbox.delivery.smtp.info import SessionInfo


@dataclass(frozen=True, slots=True)
class Envelope:
    """Sender and recipients as they go on the wire."""

    sender: bytes
    recipients: tuple[tuple[str, bytes], ...]
    utf8: bool

    @classmethod
    def build(cls, sender: str, recipients: Sequence[str]) -> Envelope:
        """Raises ValueError for an address that cannot go on a command line."""
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        encoding = "utf-8" if utf8 else "ascii"
        return cls(_quoted(sender).encode(encoding),
                   tuple((r, _quoted(r).encode(encoding)) for r in recipients), utf8)


# A dot-atom local part at a plain domain: aiosmtplib's `quote_address` returns it as it
# is, in angle brackets, after parsing it as a header would (email.utils.parseaddr), a
# sixteenth of a delivery's CPU time on loopback (issue 15). Anything else goes through it.
_PLAIN = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


def _quoted(address: str) -> str:
    if _PLAIN.fullmatch(address):
        return f"<{address}>"
    return quote_address(address)


def prepare(sender: str, recipients: Sequence[str], message: bytes | MessageBody,
            info: SessionInfo, host: str) -> Envelope | SessionFailure:
    """Checks that need no command (SIZE, SMTPUTF8, address syntax): a
    failure here sends nothing and leaves the session usable."""
    limit = info.size_limit
    if limit is not None and size_of(message) > limit:
        return SessionFailure(Stage.SIZE_CHECK, condition=Condition.MESSAGE_TOO_BIG,
                              detail=f"the message is {size_of(message)} bytes; "
                              f"{host} accepts at most {limit}")
    try:
        envelope = Envelope.build(sender, recipients)
    except ValueError as exc:
        return SessionFailure(Stage.MAIL, condition=Condition.PROTOCOL_ERROR, detail=str(exc))
    if envelope.utf8 and not info.offers("smtputf8"):
        return SessionFailure(Stage.MAIL, condition=Condition.SMTPUTF8_REQUIRED,
                              detail="an address is not ASCII and the relay does not "
                              "offer SMTPUTF8")
    return envelope


def mail_command(envelope: Envelope, message: bytes | MessageBody,
                 info: SessionInfo) -> tuple[bytes, ...]:
    """MAIL FROM with the parameters the relay offers and the message needs."""
    parameters = []
    if info.offers("size"):
        parameters.append(b"SIZE=%d" % size_of(message))
    if envelope.utf8:
        parameters.append(b"SMTPUTF8")
    eight_bit = not message.isascii() if isinstance(message, bytes) else message.eight_bit
    if info.offers("8bitmime") and eight_bit:
        parameters.append(b"BODY=8BITMIME")
    return (b"MAIL", b"FROM:" + envelope.sender, *parameters)
