"""A message's content, typed: what is fixed at acceptance and sent on every
attempt. Pure values; no I/O.

`core.compose` builds a `MessageContent` at submit, `core.mime` plans the
wire form from it, and `store.rows` maps it to and from the JSON column (the
only place that knows the JSON). Bcc is not content: it is in the envelope.

    MessageContent
      from_, to, cc, reply_to, subject, date, headers   the top-level headers
      text, html                                        the bodies
      attachments: AttachmentRef    a file in the blob store: attached, an inline
                                    image (content_id), or sent as a LinkRef
                   EmbeddedFile     a file whose bytes are in the content itself
                                    (mail accepted before the blob store existed;
                                    `outbox smtp-test`)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import format_datetime
from functools import lru_cache


def date_header(at: datetime) -> str:
    """The Date header's value for `at` (RFC 5322: to the second). The text of the last
    seconds asked for is kept: every submit dated its message, 1.4 % of serve's event loop
    on `POST /v1/messages` (py-spy over `bench/cpu_split.py --path http-lean`)."""
    # The offset is part of the key: equal instants in other offsets are written in theirs.
    return _date_text(at.replace(microsecond=0), at.utcoffset())


@lru_cache(maxsize=4)
def _date_text(second: datetime, _offset: timedelta | None) -> str:
    return format_datetime(second)


@dataclass(frozen=True, slots=True)
class LinkRef:
    """A signed download link that replaces the file in the body (send as link)."""

    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """A file in the blob store, by sha256 and decoded size."""

    filename: str
    content_type: str
    sha256: str
    size: int
    content_id: str | None = None  # an inline image of the HTML body (<img src="cid:...">)
    link: LinkRef | None = None  # too large to attach: sent as a download link
    sealed: bool = False  # the whole body of signed or encrypted mail, sent as it came

    @property
    def is_inline(self) -> bool:
        return bool(self.content_id) and self.link is None


@dataclass(frozen=True, slots=True)
class EmbeddedFile:
    """A file whose bytes travel in the content, as base64."""

    filename: str
    content_type: str
    content_base64: str


Attachment = AttachmentRef | EmbeddedFile


@dataclass(frozen=True, slots=True)
class PlannedBlob:
    """A file the message uses; a linked one must outlive the message until `keep_until`."""

    sha256: str
    size: int
    keep_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class MessageContent:
    from_: str  # the From header as written, e.g. 'Shop <shop@example.org>'
    date: str  # the Date header (RFC 5322), fixed at acceptance
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # extra headers (name, value), in order
    attachments: tuple[Attachment, ...] = ()

    @property
    def held_size(self) -> int:
        """Characters of text, HTML and embedded files: what the content holds in memory
        (files in the blob store are streamed when sent, not held)."""
        return len(self.text or "") + len(self.html or "") + sum(
            len(a.content_base64) for a in self.attachments if isinstance(a, EmbeddedFile))

    def with_date(self, now: datetime) -> MessageContent:
        """The same content dated `now` (a resend)."""
        return replace(self, date=date_header(now))

    @property
    def linked(self) -> tuple[tuple[AttachmentRef, LinkRef], ...]:
        """Files sent as download links, with their links."""
        return tuple((a, a.link) for a in self.attachments
                     if isinstance(a, AttachmentRef) and a.link is not None)

    @property
    def inline(self) -> tuple[AttachmentRef, ...]:
        """Inline images of the HTML body."""
        return tuple(a for a in self.attachments if isinstance(a, AttachmentRef) and a.is_inline)

    @property
    def attached(self) -> tuple[Attachment, ...]:
        """Files attached as they are (neither inline nor linked nor a sealed body)."""
        return tuple(a for a in self.attachments if isinstance(a, EmbeddedFile) or (
            not a.content_id and a.link is None and not a.sealed))

    @property
    def sealed_body(self) -> AttachmentRef | None:
        """The body of signed or encrypted mail, which goes out as it came
        (`core.inbound`); None for mail Outbox builds."""
        return next((a for a in self.attachments if isinstance(a, AttachmentRef) and a.sealed),
                    None)

    def blob_uses(self) -> tuple[PlannedBlob, ...]:
        """One use per distinct file in the blob store; a linked file is kept until its
        link expires."""
        uses: dict[str, PlannedBlob] = {}
        for entry in self.attachments:
            if not isinstance(entry, AttachmentRef):
                continue
            keep = entry.link.expires_at if entry.link is not None else None
            earlier = uses.get(entry.sha256)
            if earlier is not None and earlier.keep_until is not None and (
                    keep is None or earlier.keep_until > keep):
                keep = earlier.keep_until
            uses[entry.sha256] = PlannedBlob(entry.sha256, entry.size, keep)
        return tuple(uses.values())
