"""The wire form of a message, planned from its stored content. Pure; no I/O.

`plan_mime(content, message_id)` decides the structure, the boundaries, the
headers and every encoding, and returns a `MimePlan`: literal byte segments
(headers, text bodies, boundaries) and `BlobPart` placeholders for files in
the blob store, with the exact size on the wire (CRLF line ends, before
dot-stuffing). Nothing large is encoded here: a file's base64 size is
arithmetic, so the size check at submit and the relay's SIZE check cost the
same for 1 KB and 100 MB. `delivery.mime_writer` streams a plan from the
blob store; `build_message` assembles one in memory (small messages, tests).

Structure, outermost first (each level only when needed):

    multipart/mixed            body + attachments
      multipart/alternative    text/plain, then the HTML, then a calendar invitation
        multipart/related      text/html + inline images (Content-ID, cid:)

A calendar invitation is the first attached file of type text/calendar with a
`method` (an iTIP message: REQUEST, CANCEL, REPLY...). It goes out as the last
alternative of the body, as Outlook and Google send invites (iMIP, RFC 6047; Outlook's
form: [MS-OXCMAIL] 2.1.3.3.8), so that clients show it as an invitation with its
answers; as a file among the attachments, several show only an .ics to open. It keeps
its parameters but `name`.

Signed or encrypted mail (`MessageContent.sealed_body`, `core.inbound`) is not built:
its body goes out as it came, under its own Content-Type, after the headers.

The content is fixed at acceptance (Date, Message-ID, headers, boundaries
derived from the Message-ID), so every attempt sends the same bytes. Bcc
never appears in the headers.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import count

from outbox.core import mime_headers as h
from outbox.core.content import Attachment, AttachmentRef, MessageContent
from outbox.core.links import link_note_html, link_note_text
from outbox.core.mime_encode import base64_lines, base64_size, encode_text
from outbox.core.mime_types import (
    ATTACHED_MESSAGE,
    OWN_PARAMS,
    Params,
    bare_type,
    is_seven_bit,
    parse_content_type,
)

# Headers Outbox writes itself; a client may not set them through `headers`.
RESERVED_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to",
    "mime-version", "content-type", "content-transfer-encoding",
})
CALENDAR = "text/calendar"
_BOUNDARY_PREFIX = "=_ob_"  # "=_" never occurs in quoted-printable or base64


@dataclass(frozen=True, slots=True)
class BlobPart:
    """A file in the blob store, written as base64 in 76-column lines, or as it is
    (`as_is`: an attached message whose bytes are 7bit lines)."""

    sha256: str
    size: int
    as_is: bool = False

    @property
    def encoded_size(self) -> int:
        return self.size if self.as_is else base64_size(self.size)


Segment = bytes | BlobPart


@dataclass(frozen=True, slots=True)
class MimePlan:
    segments: tuple[Segment, ...]
    size: int  # bytes on the wire, CRLF line ends, before dot-stuffing
    eight_bit: bool  # a header carries raw UTF-8 (an SMTPUTF8 address)

    @property
    def blobs(self) -> tuple[BlobPart, ...]:
        return tuple(s for s in self.segments if isinstance(s, BlobPart))


@dataclass(slots=True)
class _Leaf:
    headers: str
    body: bytes | BlobPart


@dataclass(slots=True)
class _Multipart:
    subtype: str
    children: list[_Node]
    params: list[tuple[str, str]] = field(default_factory=list)
    boundary: str = ""


_Node = _Leaf | _Multipart


# --- planning ----------------------------------------------------------------------------

def plan_mime(content: MessageContent, message_id: str) -> MimePlan:
    """The message's segments and size, from the stored content."""
    root = _body_tree(content)
    _assign_boundaries(root, message_id)
    out = _Segments()
    out.add(_top_headers(content, message_id))
    _write_node(out, root)
    return out.plan()


def build_message(content: MessageContent, message_id: str,
                  blobs: Mapping[str, bytes] | None = None) -> bytes:
    """RFC 5322 bytes with CRLF line endings, ready for DATA; files held in the
    blob store are taken from `blobs` (sha256 → content)."""
    plan = plan_mime(content, message_id)
    return b"".join(_inline(segment, blobs or {}) for segment in plan.segments)


def _inline(segment: Segment, blobs: Mapping[str, bytes]) -> bytes:
    if isinstance(segment, bytes):
        return segment
    if segment.sha256 not in blobs:
        raise ValueError(f"the content of blob {segment.sha256} was not given")
    data = blobs[segment.sha256]
    return data if segment.as_is else base64_lines(data)


def _body_tree(content: MessageContent) -> _Node:
    sealed = content.sealed_body
    if sealed is not None:
        return _sealed_leaf(sealed)
    linked, inline, files = content.linked, content.inline, content.attached
    invitation = _invitation(files)
    if invitation is not None:
        files = tuple(f for f in files if f is not invitation[0])
    text, html = content.text, content.html
    if linked:
        text = None if text is None else _with_text_note(text, link_note_text(linked))
        html = None if html is None else _with_html_note(html, link_note_html(linked))
    html_node: _Node | None = None if html is None else _text_leaf(html, "html")
    if html_node is not None and inline:
        html_node = _Multipart("related", [html_node, *map(_file_leaf, inline)],
                               [("type", "text/html")])
    text_node = _text_leaf(text or "", "plain") if text is not None or html_node is None else None
    calendar = None if invitation is None else _invitation_leaf(*invitation)
    body = _alternative([n for n in (text_node, html_node, calendar) if n is not None])
    if not files:
        return body
    return _Multipart("mixed", [body, *map(_file_leaf, files)])


def _alternative(nodes: list[_Node]) -> _Node:
    return nodes[0] if len(nodes) == 1 else _Multipart("alternative", nodes)


def _sealed_leaf(sealed: AttachmentRef) -> _Leaf:
    """Signed or encrypted mail's body as it came: its Content-Type written as it was
    (a boundary re-quoted or split by RFC 2231 would not be found), its bytes as they
    are; application/pkcs7-mime is a base64 file."""
    headers = f"Content-Type: {sealed.content_type}\r\n"
    if bare_type(sealed.content_type).startswith("application/"):
        headers += ("Content-Transfer-Encoding: base64\r\n"
                    + h.with_params("Content-Disposition", "attachment",
                                    [("filename", sealed.filename)]))
    return _Leaf(headers, BlobPart(sealed.sha256, sealed.size, as_is=True))


def _invitation(files: tuple[Attachment, ...]) -> tuple[Attachment, Params] | None:
    """The first file that is a calendar invitation (text/calendar with a `method`),
    and its type's parameters."""
    for file in files:
        if bare_type(file.content_type) == CALENDAR:
            params = parse_content_type(file.content_type, "content_type")[1]
            if any(key == "method" for key, _ in params):
                return file, params
    return None


def _invitation_leaf(attachment: Attachment, params: Params) -> _Leaf:
    """An invitation as an alternative of the body: no name, no disposition."""
    body = _file_body(attachment)
    headers = (h.with_params("Content-Type", CALENDAR,
                             [(key, value) for key, value in params if key not in OWN_PARAMS])
               + "Content-Transfer-Encoding: base64\r\n")
    return _Leaf(headers, base64_lines(body) if isinstance(body, bytes) else body)


def _with_text_note(text: str, note: str) -> str:
    return text + ("\n" if text and not text.endswith(("\n", "\r")) else "") + "\n" + note


def _with_html_note(html: str, note: str) -> str:
    end = html.lower().rfind("</body>")
    return html + note if end < 0 else html[:end] + note + html[end:]


def _text_leaf(text: str, subtype: str) -> _Leaf:
    body, encoding = encode_text(text)
    headers = (h.with_params("Content-Type", f"text/{subtype}", [("charset", "utf-8")])
               + f"Content-Transfer-Encoding: {encoding}\r\n")
    return _Leaf(headers, body)


def _file_leaf(attachment: Attachment) -> _Leaf:
    """A file's part. Its type's own parameters (a calendar's `method`) go before the
    `name` Outbox writes. An attached message goes as it is (RFC 2046 5.2.1 allows no
    base64 there); a stored one was judged at submit (`core.mime_types.as_sent`),
    bytes held in the content are judged here."""
    filename = attachment.filename
    bare, params = parse_content_type(attachment.content_type or "application/octet-stream",
                                      "content_type")
    params = tuple((key, value) for key, value in params if key not in OWN_PARAMS)
    body = _file_body(attachment)
    as_is = bare.lower() == ATTACHED_MESSAGE and (
        isinstance(body, BlobPart) or is_seven_bit(body))
    if bare.lower() == ATTACHED_MESSAGE and not as_is:
        bare, params = "application/octet-stream", ()
    content_id = attachment.content_id if isinstance(attachment, AttachmentRef) else None
    headers = (h.with_params("Content-Type", bare, [*params, ("name", filename)],
                             legacy_names=("name",))
               + f"Content-Transfer-Encoding: {'7bit' if as_is else 'base64'}\r\n"
               + (f"Content-ID: <{content_id}>\r\n" if content_id else "")
               + h.with_params("Content-Disposition", "inline" if content_id else "attachment",
                               [("filename", filename)]))
    if isinstance(body, bytes) and not as_is:
        body = base64_lines(body)
    return _Leaf(headers, body)


def _file_body(attachment: Attachment) -> bytes | BlobPart:
    """A stored file's blob (an attached message's sent as it is), or the bytes the
    content holds, decoded."""
    if isinstance(attachment, AttachmentRef):
        as_is = bare_type(attachment.content_type) == ATTACHED_MESSAGE
        return BlobPart(attachment.sha256, attachment.size, as_is)
    return base64.b64decode("".join(attachment.content_base64.split()))


# --- boundaries ---------------------------------------------------------------------------

def _assign_boundaries(root: _Node, message_id: str) -> None:
    """Boundaries derived from the Message-ID, so every attempt writes the same
    bytes; a 7bit text that happens to contain one gets another salt."""
    multiparts = list(_multiparts(root))
    texts = [leaf.body for leaf in _leaves(root) if isinstance(leaf.body, bytes)]
    for salt in count():
        boundaries = [_boundary(message_id, index, salt) for index in range(len(multiparts))]
        if not any(b.encode() in text for b in boundaries for text in texts):
            break
    for node, boundary in zip(multiparts, boundaries, strict=True):
        node.boundary = boundary


def _boundary(message_id: str, index: int, salt: int) -> str:
    digest = hashlib.sha256(f"{message_id}\0{index}\0{salt}".encode()).hexdigest()
    return f"{_BOUNDARY_PREFIX}{digest[:28]}"


def _multiparts(node: _Node) -> Iterator[_Multipart]:
    if isinstance(node, _Multipart):
        yield node
        for child in node.children:
            yield from _multiparts(child)


def _leaves(node: _Node) -> Iterator[_Leaf]:
    if isinstance(node, _Leaf):
        yield node
        return
    for child in node.children:
        yield from _leaves(child)


# --- writing ------------------------------------------------------------------------------

def _top_headers(content: MessageContent, message_id: str) -> str:
    lines = [h.addresses("From", [content.from_])]
    for name, addresses in (("To", content.to), ("Cc", content.cc),
                            ("Reply-To", content.reply_to)):
        if addresses:
            lines.append(h.addresses(name, addresses))
    lines.append(h.unstructured("Subject", content.subject))
    lines.append(f"Date: {content.date}\r\n")
    lines.append(f"Message-ID: {message_id}\r\n")
    lines += [h.unstructured(name, value) for name, value in content.headers]
    lines.append("MIME-Version: 1.0\r\n")
    return "".join(lines)


def _write_node(out: _Segments, node: _Node) -> None:
    """The node's own headers, the blank line, then its body."""
    if isinstance(node, _Leaf):
        out.add(node.headers + "\r\n")
        out.add(node.body)
        return
    params = [("boundary", node.boundary), *node.params]
    out.add(h.with_params("Content-Type", f"multipart/{node.subtype}", params) + "\r\n")
    for child in node.children:
        out.add(f"--{node.boundary}\r\n")
        _write_node(out, child)
        out.add("\r\n")
    out.add(f"--{node.boundary}--\r\n")


class _Segments:
    """Collects the plan: adjacent literal pieces are joined into one segment."""

    def __init__(self) -> None:
        self._segments: list[Segment] = []
        self._pending: list[bytes] = []
        self._size = 0
        self._eight_bit = False

    def add(self, piece: str | bytes | BlobPart) -> None:
        if isinstance(piece, BlobPart):
            self._flush()
            self._segments.append(piece)
            self._size += piece.encoded_size
            return
        if isinstance(piece, str):
            self._eight_bit = self._eight_bit or not piece.isascii()
            piece = piece.encode("utf-8")
        self._pending.append(piece)
        self._size += len(piece)

    def _flush(self) -> None:
        if self._pending:
            self._segments.append(b"".join(self._pending))
            self._pending = []

    def plan(self) -> MimePlan:
        self._flush()
        return MimePlan(tuple(self._segments), self._size, self._eight_bit)

