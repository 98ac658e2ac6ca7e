"""Stream a planned message from the blob store: the I/O half of `core.mime`.

`MimeWriter(blobs).body_for(content, message_id)` plans the message (pure)
and returns a `PlannedBody` whose `chunks()` yield the literal segments as
they are and each file as base64 lines (an attached message as it is), about
1.4 MB at a time, encoded in a worker thread while its sha256 and size are checked
against the plan. A
file that is missing, the wrong size or the wrong hash raises
`BodyUnavailable("attachment_corrupt")` before the body ends, so the
transport never sends the final "." after a damaged file; a blob store that
fails raises `BodyUnavailable("attachment_unreadable")` (retried later).
Nothing holds more than a chunk or two of a file in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Protocol

from outbox.core.content import MessageContent
from outbox.core.mime import BlobPart, MimePlan, plan_mime
from outbox.core.mime_encode import Base64Lines
from outbox.core.report import Condition
from outbox.errors import BlobCorrupt, BodyUnavailable, StorageError

_THREAD_AT = 256 * 1024  # encode smaller pieces on the event loop: a thread hop costs more
# Two threads of its own: base64 holds the GIL anyway, and few threads keep few malloc
# arenas, so freed chunk buffers are reused instead of piling up per thread.
_ENCODERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="outbox-mime")


class BlobSource(Protocol):
    """What the writer needs of a blob store (`outbox.blobs.BlobStore`)."""

    def read(self, sha256: str, size: int) -> AsyncIterator[bytes]: ...

    async def check(self, sha256: str, size: int) -> None: ...


class MimeWriter:
    def __init__(self, blobs: BlobSource) -> None:
        self._blobs = blobs

    def body_for(self, content: MessageContent, message_id: str) -> PlannedBody:
        return PlannedBody(plan_mime(content, message_id), self._blobs)


class PlannedBody:
    """A `delivery.body.MessageBody` from a plan."""

    def __init__(self, plan: MimePlan, blobs: BlobSource) -> None:
        self.plan = plan
        self._blobs = blobs

    @property
    def size(self) -> int:
        return self.plan.size

    @property
    def eight_bit(self) -> bool:
        return self.plan.eight_bit

    @property
    def is_small(self) -> bool:
        """No files from the blob store: `as_bytes()` is cheap."""
        return not self.plan.blobs

    def as_bytes(self) -> bytes:
        return b"".join(s for s in self.plan.segments if isinstance(s, bytes))

    async def check(self) -> None:
        """`BodyUnavailable` unless every file is there with its size (no hashing)."""
        for part in self.plan.blobs:
            with _translated(part):
                await self._blobs.check(part.sha256, part.size)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        for segment in self.plan.segments:
            if isinstance(segment, bytes):
                yield segment
                continue
            async for encoded in self._encoded(segment):
                yield encoded

    async def _encoded(self, part: BlobPart) -> AsyncIterator[bytes]:
        verifier = _Verifier(part)
        with _translated(part):
            async for raw in self._blobs.read(part.sha256, part.size):
                if len(raw) >= _THREAD_AT:
                    encoded = await asyncio.get_running_loop().run_in_executor(
                        _ENCODERS, verifier.feed, raw)
                else:
                    encoded = verifier.feed(raw)
                if encoded:
                    yield encoded
        yield verifier.finish()


class _Verifier:
    """Base64-encodes one file (or passes an attached message on as it is) while
    checking its size and sha256 against the plan."""

    def __init__(self, part: BlobPart) -> None:
        self.part = part
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._lines = Base64Lines()

    def feed(self, raw: bytes) -> bytes:
        self.size += len(raw)
        if self.size > self.part.size:
            raise _corrupt(self.part, f"is longer than the {self.part.size:,} bytes stored")
        self._sha256.update(raw)
        return raw if self.part.as_is else self._lines.feed(raw)

    def finish(self) -> bytes:
        if self.size != self.part.size:
            raise _corrupt(self.part, f"is {self.size:,} bytes, not the {self.part.size:,} "
                           "stored")
        if self._sha256.hexdigest() != self.part.sha256:
            raise _corrupt(self.part, "no longer matches its sha256")
        return b"" if self.part.as_is else self._lines.finish()


def _corrupt(part: BlobPart, what: str) -> BodyUnavailable:
    return BodyUnavailable(f"attachment blob {part.sha256[:16]} {what}; nothing was sent",
                           condition=Condition.ATTACHMENT_CORRUPT.value)


@contextmanager
def _translated(part: BlobPart) -> Iterator[None]:
    """Blob store errors as `BodyUnavailable` with the condition that decides."""
    try:
        yield
    except BlobCorrupt as exc:
        raise BodyUnavailable(f"{exc.message}; nothing was sent",
                              condition=Condition.ATTACHMENT_CORRUPT.value) from exc
    except (StorageError, OSError) as exc:
        raise BodyUnavailable(f"attachment blob {part.sha256[:16]} could not be read: {exc}",
                              condition=Condition.ATTACHMENT_UNREADABLE.value) from exc
