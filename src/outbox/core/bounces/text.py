"""Non-standard bounces, read from their words: qmail, Exim, old Postfix and
Sendmail text bounces, Exchange/Outlook and Gmail notices that arrive without a
delivery-status part. Pure.

A message is such a bounce when it says so unmistakably: an `X-Failed-Recipients`
header (Exim), qmail's "This is the qmail-send program", or a sender that is a
mailer daemon (MAILER-DAEMON, postmaster, "Mail Delivery System") together with a
bounce subject ("Undelivered Mail Returned to Sender", "Delivery Status
Notification (Failure)", "failure notice", "Undeliverable: ...").

The recipients are the addresses of the diagnostic text (above the copy of the
returned message), or X-Failed-Recipients; each takes the first enhanced status
code written after it, else the first in the text. Without any code the words
decide: "delayed", "will retry", "temporary" make it soft, anything else hard.
"""

from __future__ import annotations

import re
from email.message import Message
from email.utils import getaddresses

from outbox.core.bounces.report import header_text, text_of
from outbox.core.bounces.values import BouncedRecipient, BounceKind, kind_of_status, status_in

_DAEMONS = {"mailer-daemon", "postmaster", "mail-daemon", "maildaemon", "mailerdaemon",
            "mdaemon", "bounce", "bounces"}
_DAEMON_NAME = re.compile(r"mail delivery (system|subsystem)|mailer.?daemon|postmaster|"
                          r"microsoft outlook|system administrator", re.I)
_SUBJECT = re.compile(
    r"undeliver|delivery status notification|failure notice|delivery fail|returned mail|"
    r"mail delivery failed|delivery has failed|could not be delivered|couldn't be delivered|"
    r"not delivered|delivery problem|warning: message .* delayed|delayed mail|"
    r"unzustellbar|non remis|non recapitabile|no se puede entregar", re.I)
_QMAIL = re.compile(r"this is the qmail-send program", re.I)
# Where the copy of the returned message starts: nothing below is diagnostic.
_COPY = re.compile(
    r"^\s*(-+ ?(this is a copy|below this line|original message|the original message|"
    r"undelivered message)|original message headers|"
    r"message headers follow|\(?received:|return-path:|------ this is a copy)", re.I | re.M)
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_SOFT_WORDS = re.compile(r"delayed|will (be )?retr|temporar|has not yet been delivered|"
                         r"still trying|deferred", re.I)
_DIAGNOSTIC = re.compile(r"\b[45]\d\d[ -][^\n]*|\(#[45]\.\d+\.\d+\)[^\n]*|"
                         r"remote server returned '[^']*'", re.I)
_SCAN = 600  # characters after an address in which its status is looked for


def is_text_bounce(message: Message) -> bool:
    if message.get("x-failed-recipients"):
        return True
    body = _diagnostic_text(message)
    if _QMAIL.search(body):
        return True
    return _from_daemon(message) and bool(_SUBJECT.search(_subject(message)))


def text_recipients(message: Message, own: set[str]) -> tuple[BouncedRecipient, ...]:
    """The bounced recipients the text names; `own` are addresses that are not
    recipients (the bounce's sender and the bounce address)."""
    text = _diagnostic_text(message)
    named = [a.strip() for a in str(message.get("x-failed-recipients", "")).split(",")]
    addresses = [a for a in named if "@" in a] or _addresses_in(text, own)
    fallback_status = status_in(text)
    default = BounceKind.SOFT if _SOFT_WORDS.search(_subject(message) + "\n" + text) \
        else BounceKind.HARD
    return tuple(_recipient(address, text, fallback_status, default) for address in addresses)


def _recipient(address: str, text: str, fallback: str | None,
               default: BounceKind) -> BouncedRecipient:
    at = text.lower().find(address.lower())
    window = text[at:at + _SCAN] if at >= 0 else text
    status = status_in(window) or fallback
    diagnostic = _diagnostic_in(window) or _diagnostic_in(text)
    kind = kind_of_status(status, default)
    action = "delayed" if default is BounceKind.SOFT and kind is BounceKind.SOFT else "failed"
    return BouncedRecipient(address, kind, status, action, diagnostic)


def _diagnostic_in(text: str) -> str:
    match = _DIAGNOSTIC.search(text)
    return " ".join(match.group(0).split())[:500] if match else ""


def _addresses_in(text: str, own: set[str]) -> list[str]:
    found: list[str] = []
    for address in _ADDRESS.findall(text):
        lower = address.lower().rstrip(".")
        local = lower.split("@")[0]
        if lower in own or local in _DAEMONS or lower in found:
            continue
        found.append(lower)
    return found


def _diagnostic_text(message: Message) -> str:
    """The bounce's own words: its text parts before any attached message, cut where a
    copy of the returned message starts."""
    texts: list[str] = []
    for part in message.walk():
        if part.get_content_maintype() == "message":
            break
        if part.get_content_type() in {"text/plain", "text/html"}:
            texts.append(_plain(text_of(part), part.get_content_subtype()))
    text = "\n".join(texts).replace("\r\n", "\n")
    match = _COPY.search(text)
    return text[:match.start()] if match else text


def _plain(text: str, subtype: str) -> str:
    if subtype != "html":
        return text
    return re.sub(r"<[^>]*>", " ", text).replace("&lt;", "<").replace("&gt;", ">")


def _from_daemon(message: Message) -> bool:
    for name, address in getaddresses([str(message.get("from", ""))]):
        local = address.lower().split("@")[0]
        if local in _DAEMONS or local.startswith("microsoftexchange") \
                or _DAEMON_NAME.search(name):
            return True
    return False


def _subject(message: Message) -> str:
    return header_text(message, "subject")
