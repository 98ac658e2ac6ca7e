"""VERP return paths: the envelope sender Outbox gives a message so that its bounce
says which message it was about, without guessing. Pure.

    bounces+<message id>.<mac>@<bounce domain>

`<message id>` is Outbox's id of the message (32 hex digits); `<mac>` is the first 16
hex digits of HMAC-SHA256(secret, id), so nobody can aim a forged bounce at a message
(and suppress its recipients) without the secret. The recipient a bounce is about is
in the bounce itself (DSN Final-Recipient, or the text): one return path serves every
recipient of the message, and one SMTP transaction still carries them all. The local
part stays under 64 characters (RFC 5321) for a `local_part` of up to 14.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

MAC_LENGTH = 16
_TOKEN = re.compile(r"^([0-9a-f]{8,64})\.([0-9a-f]{16})$")


def return_path(message_id: str, local_part: str, domain: str, secret: bytes) -> str:
    return f"{local_part}+{message_id}.{_mac(message_id, secret)}@{domain}"


def message_of(address: str, local_part: str, domain: str, secret: bytes) -> str | None:
    """The message id a return path names, when it is one of ours and its mac holds."""
    local, _, at_domain = address.strip().strip("<>").rpartition("@")
    prefix, plus, token = local.partition("+")
    if not plus or prefix.lower() != local_part.lower() or at_domain.lower() != domain.lower():
        return None
    match = _TOKEN.match(token.lower())
    if match is None:
        return None
    message_id, mac = match.groups()
    return message_id if hmac.compare_digest(mac, _mac(message_id, secret)) else None


def first_message_of(addresses: Iterable[str], local_part: str, domain: str,
                     secret: bytes) -> str | None:
    for address in addresses:
        found = message_of(address, local_part, domain, secret)
        if found is not None:
            return found
    return None


def is_bounce_address(address: str, local_part: str, domain: str) -> bool:
    """Addressed to the bounce mailbox (`bounces@` or `bounces+...@` the domain)."""
    local, _, at_domain = address.strip().strip("<>").rpartition("@")
    return (at_domain.lower() == domain.lower()
            and local.partition("+")[0].lower() == local_part.lower())


def _mac(message_id: str, secret: bytes) -> str:
    return hmac.new(secret, message_id.encode("ascii", "replace"),
                    hashlib.sha256).hexdigest()[:MAC_LENGTH]
