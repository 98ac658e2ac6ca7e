"""`[delivery] dedupe_message_id`: a Message-ID an API key gave before, given again.

Treated as an Idempotency-Key is: the same message again is a replay (the earlier one
comes back, nothing is queued); another message under that Message-ID is refused, not
answered as a replay, which would have dropped it without a word (found by a stranger
pass: a second message to other recipients with the first one's Message-ID got 200 and
was never sent). The same message means the same sender, recipients (with their kind)
and content; the Date header Outbox sets at submission, and the expiry of a file sent
as a link, differ between two submissions of one message and are left out.
"""

from __future__ import annotations

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
    return replace(content, date="", attachments=attachments)
