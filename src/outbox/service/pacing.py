"""Long work at submit, cut into turns of the event loop so that other requests
interleave with a large message (issue 17: big work never holds the others)."""

from __future__ import annotations

import asyncio

from outbox.core import addresses
from outbox.core.compose import Submission

CHUNK = 100  # recipients validated in one turn of the event loop (about 1 ms)


async def validate_in_chunks(submission: Submission) -> None:
    """Parse a long recipient list a chunk at a time, letting other requests run in
    between (about 8 µs of CPU per new address here): `plan_message` then finds every
    bare address in the parser's cache and its turn of the event loop stays short
    (1,000 recipients: about 2 ms instead of 8). Errors are left for `plan_message`
    to raise, naming the field."""
    values = listed(submission)
    if len(values) <= CHUNK:
        return
    for start in range(0, len(values), CHUNK):
        addresses.address_errors(values[start:start + CHUNK], "to")
        await asyncio.sleep(0)


def listed(submission: Submission) -> list[str]:
    """The recipient entries as given (an entry may hold several addresses)."""
    fields = [submission.to, submission.cc, submission.bcc, submission.envelope]
    return [v for f in fields if f for v in ([f] if isinstance(f, str) else f)]


# Text sent to the planning process with a message (outbox/turns.py) at most. It is
# pickled and copied through a pipe: 1 MB adds about 3 ms to the round trip here (0.4 ms
# without it), a 20 MB attachment would cost more than the planning itself, and a copy of
# it in the planning process's memory.
HAND_OVER = 1_000_000


def portable(submission: Submission) -> bool:
    """Whether the message is small enough in bytes to be planned in another process."""
    inline = sum(len(a.content_base64) for a in submission.attachments)
    body = len(submission.text or "") + len(submission.html or "")
    return inline + body + sum(map(len, submission.headers.values())) <= HAND_OVER
