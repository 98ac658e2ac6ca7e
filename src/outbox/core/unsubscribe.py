"""One-click unsubscribe (RFC 8058, RFC 2369): the signed link a message carries in
`List-Unsubscribe`, and its check. Pure.

The token is `<base64url of "message id:address">.<mac>`, the mac the first 20 hex
digits of HMAC-SHA256(secret, that text): it names the recipient and the message, and
nobody can unsubscribe an address Outbox did not send that link to. A message with a
link has exactly one recipient (the link must name who unsubscribes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

MAC_LENGTH = 20
POST_HEADER = "List-Unsubscribe=One-Click"


def make_token(message_id: str, address: str, secret: bytes) -> str:
    text = f"{message_id}:{address}".encode()
    payload = base64.urlsafe_b64encode(text).decode().rstrip("=")
    return f"{payload}.{_mac(text, secret)}"


def read_token(token: str, secret: bytes) -> tuple[str, str] | None:
    """(message id, address) of a token Outbox made; None for any other string."""
    payload, dot, mac = token.partition(".")
    if not dot or len(payload) > 2000:
        return None
    try:
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(mac, _mac(text, secret)):
        return None
    message_id, colon, address = text.decode("utf-8", "replace").partition(":")
    return (message_id, address) if colon and "@" in address else None


def unsubscribe_headers(url: str) -> dict[str, str]:
    """The two headers of RFC 8058 one-click unsubscribe for this link."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": POST_HEADER}


def _mac(text: bytes, secret: bytes) -> str:
    return hmac.new(secret, text, hashlib.sha256).hexdigest()[:MAC_LENGTH]
