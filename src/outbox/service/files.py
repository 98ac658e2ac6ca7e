"""Attachment files for the use cases: uploads, what submit needs to know of each
file, send-as-link keys and downloads. The edge around `core.attachments`.

    files = AttachmentFiles(settings, store, blobs)
    upload = await files.upload(owner, request.stream())        # POST /v1/uploads
    found = await files.resolve(submission, owner)               # at submit, before planning
    await files.keep(found, now)                                 # after planning, before enqueue
    ticket, chunks = await files.download(token)                 # GET /d/{token}

At submit, an `upload_id` becomes its blob's sha256 and size; `content_base64`
is decoded, hashed and, once the message is planned, stored as a blob too,
so delivery always has one path. Each file's first bytes are sniffed for
the type policy.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from outbox.blobs import BlobStore, StoredBlob
from outbox.blobs.sniff import SNIFF_BYTES, sniff
from outbox.clock import utcnow
from outbox.config import Settings
from outbox.core.attachments import AttachmentIn, FileInfo, decode_base64, is_attached_message
from outbox.core.compose import PlannedMessage, Submission
from outbox.core.content import MessageContent, PlannedBlob
from outbox.core.links import LinkPolicy, LinkTicket, read_link
from outbox.core.mime_types import SevenBitLines, is_seven_bit
from outbox.errors import (
    BlobCorrupt,
    Conflict,
    EmptyUpload,
    LinkExpired,
    TooBusy,
    UnknownUpload,
)
from outbox.store.base import BlobUse, Store, Upload

LINK_KEY_NAME = "download-links"
INLINE_GRACE = timedelta(minutes=10)  # a base64 file is stored, then its message enqueued
SPOOLED = "outbox-spooled:"  # a token for a base64 file decoded as its request streamed in


@dataclass(frozen=True, slots=True)
class FoundFiles:
    infos: tuple[FileInfo, ...]
    inline: tuple[bytes | None, ...]  # decoded content_base64, stored once planned


class AttachmentFiles:
    def __init__(self, settings: Settings, store: Store, blobs: BlobStore, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self._clock = clock
        self._link_key: bytes | None = None
        self._uploading: Counter[str] = Counter()  # owner -> uploads streaming now
        self._spooled: dict[str, StoredBlob] = {}  # token -> a spooled base64 file

    # -- uploads -------------------------------------------------------------------------

    async def upload(self, owner: str, chunks: AsyncIterable[bytes], now: datetime) -> Upload:
        """Stream content into the blob store; usable by `owner` until upload_ttl passes.
        `TooBusy` when `owner` already streams [limits] max_uploads_in_flight (in this
        process)."""
        cap = self.settings.limits.max_uploads_in_flight
        if self._uploading[owner] >= cap:
            raise TooBusy(f"this API key already has {cap} uploads under way, the limit "
                          "(limits.max_uploads_in_flight)", retry_after=1,
                          hint="wait for one to finish, or raise [limits] max_uploads_in_flight")
        self._uploading[owner] += 1
        try:
            return await self._upload(owner, chunks, now)
        finally:
            self._uploading[owner] -= 1
            if not self._uploading[owner]:
                del self._uploading[owner]

    async def _upload(self, owner: str, chunks: AsyncIterable[bytes], now: datetime) -> Upload:
        expires = now + self.settings.storage.upload_ttl
        stored = await self.blobs.put(_not_empty(chunks),
                                      max_size=self.settings.limits.max_attachment_size,
                                      keep_until=expires, now=now)
        upload = Upload(f"up_{secrets.token_urlsafe(18)}", owner, stored.sha256, stored.size,
                        now, expires)
        await self.store.blob_index.create_upload(upload)
        return upload

    # -- submit ----------------------------------------------------------------------------

    async def resolve(self, submission: Submission, owner: str, now: datetime) -> FoundFiles:
        """Each attachment's size, sha256 and sniffed type (`InputError` naming
        the field for an unknown upload or bad base64)."""
        infos: list[FileInfo] = []
        inline: list[bytes | None] = []
        for index, attachment in enumerate(submission.attachments):
            where = f"attachments[{index}]"
            if attachment.upload_id is not None:
                info = await self._uploaded(attachment, owner, now, where)
                infos.append(await self._seven_bit(attachment, info))
                inline.append(None)
            elif self.spooled(attachment.content_base64) is not None:
                info = await self._spooled_info(attachment.content_base64)
                infos.append(await self._seven_bit(attachment, info))
                inline.append(None)
            else:
                data = decode_base64(attachment, where)
                infos.append(FileInfo(hashlib.sha256(data).hexdigest(), len(data),
                                      sniff(data[:SNIFF_BYTES]),
                                      is_attached_message(attachment) and is_seven_bit(data)))
                inline.append(data)
        return FoundFiles(tuple(infos), tuple(inline))

    async def _seven_bit(self, attachment: AttachmentIn, info: FileInfo) -> FileInfo:
        """An attached message's bytes read through: they decide how it is sent."""
        if not is_attached_message(attachment):
            return info
        check = SevenBitLines()
        async for chunk in self.blobs.read(info.sha256, info.size):
            check.feed(chunk)
        return replace(info, seven_bit=check.finish())

    async def _uploaded(self, attachment: AttachmentIn, owner: str, now: datetime,
                        where: str) -> FileInfo:
        upload = await self.store.blob_index.find_upload(owner, attachment.upload_id or "", now)
        if upload is None:
            raise UnknownUpload(f"no upload with id {attachment.upload_id!r} (uploads are "
                                "kept for [storage] upload_ttl after POST /v1/uploads)",
                                field=f"{where}.upload_id")
        head = await self.blobs.head(upload.sha256, upload.size, SNIFF_BYTES)
        return FileInfo(upload.sha256, upload.size, sniff(head))

    # -- base64 files decoded while their request streamed in (api.spool) ---------------

    async def spool(self, chunks: AsyncIterable[bytes], now: datetime) -> str:
        """Store a decoded `content_base64` file; the token that stands for it in the
        request (kept until its message is enqueued, or INLINE_GRACE)."""
        stored = await self.blobs.put(chunks, max_size=self.settings.limits.max_message_size,
                                      keep_until=now + INLINE_GRACE, now=now)
        token = f"{SPOOLED}{secrets.token_urlsafe(24)}"
        self._spooled[token] = stored
        return token

    def spooled(self, content_base64: str) -> StoredBlob | None:
        if not content_base64.startswith(SPOOLED):
            return None
        return self._spooled.get(content_base64)

    def forget(self, tokens: Iterable[str]) -> None:
        for token in tokens:
            self._spooled.pop(token, None)

    async def _spooled_info(self, token: str) -> FileInfo:
        stored = self._spooled[token]
        head = await self.blobs.head(stored.sha256, stored.size, SNIFF_BYTES)
        return FileInfo(stored.sha256, stored.size, sniff(head))

    async def keep(self, found: FoundFiles, now: datetime) -> None:
        """Store the planned message's base64 files as blobs (before it is enqueued;
        from then on the message's use keeps them)."""
        keep_until = now + INLINE_GRACE
        for data in found.inline:
            if data is not None:
                await self.blobs.put_bytes(data, keep_until=keep_until, now=now)

    async def links(self) -> LinkPolicy | None:
        """Send-as-link, when [limits] link_threshold is set."""
        limits = self.settings.limits
        if not limits.link_threshold:
            return None
        return LinkPolicy(limits.link_threshold, limits.link_ttl, self.public_url(),
                          await self.link_key())

    def public_url(self) -> str:
        server = self.settings.server
        return server.public_url or f"http://{server.bind}"

    async def link_key(self) -> bytes:
        if self._link_key is None:
            configured = self.settings.limits.link_secret.get_secret_value()
            self._link_key = configured.encode() if configured else (
                await self.store.keys.signing_key(LINK_KEY_NAME, secrets.token_bytes(32),
                                                  self._clock()))
        return self._link_key

    # -- resend ----------------------------------------------------------------------------

    async def uses_of(self, message_id: str, content: MessageContent) -> list[BlobUse]:
        """The blobs a copy of this content uses; `Conflict` if they were deleted."""
        uses = _store_uses(content.blob_uses())
        stored = await self.store.blob_index.find_blobs([u.sha256 for u in uses])
        missing = [u.sha256 for u in uses if u.sha256 not in stored]
        if missing:
            raise Conflict(f"the attachments of message {message_id} were deleted ([storage] "
                           "keep_finished passed); submit it again with the files")
        return uses

    # -- downloads -------------------------------------------------------------------------

    async def download(self, token: str,
                       now: datetime) -> tuple[LinkTicket, AsyncGenerator[bytes, None]]:
        """The file behind a link, checked against its sha256 as it streams.
        `LinkInvalid` (404) for a token Outbox did not sign, `LinkExpired` (410)."""
        ticket = read_link(await self.link_key(), token, now)
        try:
            await self.blobs.check(ticket.sha256, ticket.size)
        except BlobCorrupt as exc:
            raise LinkExpired("this file is no longer available") from exc
        return ticket, self._verified(ticket)

    async def _verified(self, ticket: LinkTicket) -> AsyncGenerator[bytes, None]:
        digest = hashlib.sha256()
        async for chunk in self.blobs.read(ticket.sha256, ticket.size):
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != ticket.sha256:
            # The body is cut short of its Content-Length: the client sees a failed download.
            raise BlobCorrupt(f"blob {ticket.sha256[:16]} no longer matches its sha256")


def _store_uses(planned: tuple[PlannedBlob, ...]) -> list[BlobUse]:
    """The store's uses of the files a message needs (linked ones until their link expires)."""
    return [BlobUse(b.sha256, b.keep_until) for b in planned]


def planned_uses(planned: PlannedMessage) -> list[BlobUse]:
    return _store_uses(planned.blobs)


async def _not_empty(chunks: AsyncIterable[bytes]) -> AsyncGenerator[bytes, None]:
    """`chunks`, or `EmptyUpload` before anything is stored if they hold no byte."""
    stream = aiter(chunks)
    async for first in stream:
        if first:
            yield first
            break
    else:
        raise EmptyUpload(field="file")
    async for piece in stream:
        yield piece
