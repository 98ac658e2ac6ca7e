"""Build the wire form of a message from its stored content.

The content is fixed at acceptance (Date, Message-ID, headers), so every
attempt sends the same message. Bcc never appears in the headers.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from email import policy
from email.message import EmailMessage
from typing import Any

_WIRE_LINES = re.compile(r"\r\n|\r|\n")

# Headers Outbox writes itself; a client may not set them through `headers`.
RESERVED_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to",
    "mime-version", "content-type", "content-transfer-encoding",
})


def build_message(content: Mapping[str, Any], message_id: str) -> bytes:
    """RFC 5322 bytes with CRLF line endings, ready for DATA."""
    msg = EmailMessage(policy=policy.SMTP)
    _set_headers(msg, content, message_id)
    _set_body(msg, content)
    for attachment in content.get("attachments", ()):
        _attach(msg, attachment)
    return msg.as_bytes()


def _set_headers(msg: EmailMessage, content: Mapping[str, Any], message_id: str) -> None:
    msg["From"] = content["from"]
    if content.get("to"):
        msg["To"] = ", ".join(content["to"])
    if content.get("cc"):
        msg["Cc"] = ", ".join(content["cc"])
    if content.get("reply_to"):
        msg["Reply-To"] = ", ".join(content["reply_to"])
    msg["Subject"] = content.get("subject", "")
    msg["Date"] = content["date"]
    msg["Message-ID"] = message_id
    for name, value in content.get("headers", {}).items():
        msg[name] = value


def _set_body(msg: EmailMessage, content: Mapping[str, Any]) -> None:
    text, html = content.get("text"), content.get("html")
    if text is not None or html is None:
        msg.set_content(text or "", cte=_text_cte(text or ""))
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html", cte=_text_cte(html))
        else:
            msg.add_alternative(html, subtype="html", cte=_text_cte(html))


def _text_cte(text: str) -> str:
    """7bit/quoted-printable keep bodies readable; long lines need QP."""
    ascii_only = text.isascii()
    # Split as the wire does (CR, LF, CRLF), not as str.splitlines(), which also breaks at
    # form feed and friends: those stay inside a line on the wire.
    short_lines = all(len(line) <= 900 for line in _WIRE_LINES.split(text))
    return "7bit" if ascii_only and short_lines else "quoted-printable"


def _attach(msg: EmailMessage, attachment: Mapping[str, Any]) -> None:
    maintype, _, subtype = attachment.get("content_type", "application/octet-stream").partition("/")
    data = base64.b64decode(attachment["content_base64"])
    msg.add_attachment(data, maintype=maintype or "application",
                       subtype=subtype or "octet-stream", filename=attachment["filename"])
