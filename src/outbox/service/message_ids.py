"""`[delivery] dedupe_message_id`: a Message-ID an API key gave before, given again.

Treated as an Idempotency-Key is: the same message again is a replay (the earlier one
comes back, nothing is queued); another message under that Message-ID is refused, not
answered as a replay, which would have dropped it without a word (found by a stranger
pass: a second message to other recipients with the first one's Message-ID got 200 and
was never sent). The same message means the same sender, recipients (with their kind)
and content. What Outbox itself makes anew at each submission is left out: the Date
header, a file's download link (its expiry, so its signed URL), and the message key
inside the one-click unsubscribe link of `list_unsubscribe` (the link still has to
point at the same place for the same recipient).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import replace

from outbox.core.compose import PlannedMessage
from outbox.core.content import AttachmentRef, MessageContent
from outbox.errors import MessageIdReused
from outbox.store.values import Message


def gives_message_id(headers: Mapping[str, str]) -> bool:
    """Whether the client set the Message-ID (header names match in any case)."""
    return any(name.lower() == "message-id" for name in headers)


def replayed(earlier: Message, planned: PlannedMessage) -> Message:
    """`earlier`, when `planned` is the same message; else `MessageIdReused`."""
    same = (earlier.sender == planned.sender
            and sorted((r.address, r.kind) for r in earlier.recipients)
            == sorted((r.address, r.kind) for r in planned.recipients)
            and _comparable(earlier.content) == _comparable(planned.content))
    if not same:
        raise MessageIdReused(
            f"Message-ID {planned.message_id} was already given by this API key to another "
            "message (other recipients or content)", field="headers.Message-ID")
    return earlier


def _comparable(content: MessageContent) -> MessageContent:
    attachments = tuple(replace(a, link=None) if isinstance(a, AttachmentRef) else a
                        for a in content.attachments)
    headers = tuple((name, _unsubscribe_target(value) if name.lower() == "list-unsubscribe"
                     else value) for name, value in content.headers)
    return replace(content, date="", attachments=attachments, headers=headers)


# Outbox's one-click link (core/unsubscribe.py): <BASE/unsubscribe/PAYLOAD.MAC>, where
# PAYLOAD is the base64 of "MESSAGE-KEY:ADDRESS"; each submission gets its own key.
_UNSUBSCRIBE_LINK = re.compile(r"<(?P<base>[^<>]*/unsubscribe/)(?P<payload>[A-Za-z0-9_-]+)"
                               r"\.[0-9a-f]+>")


def _unsubscribe_target(value: str) -> str:
    """An Outbox unsubscribe link without what differs between submissions (the message
    key, and the MAC over it): its base and the address it unsubscribes. Any other value
    (a List-Unsubscribe the client wrote) as it is."""
    found = _UNSUBSCRIBE_LINK.fullmatch(value)
    if found is None:
        return value
    payload = found["payload"]
    try:
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (binascii.Error, ValueError):
        return value
    _, colon, address = text.partition(":")
    return f"<{found['base']}*:{address}>" if colon else value
