"""Where a message's large base64 attachments lie, found line by line, so that a big
message that arrived by SMTP can be read without holding it whole (issue 15).

`large_parts(lines, threshold)` walks a message's MIME structure as the stdlib's
parser splits it (headers up to the first empty line; a multipart's parts between
lines that start with "--" and its boundary, or an enclosing one's) and returns the
byte span of each leaf body that is base64, longer than `threshold` and not a
text/plain or text/html part (which may be the message's body) nor an attached
message (read as one .eml file). Pure: the caller reads the lines and does what it
likes with the spans.

The caller must check that the stdlib reads what it made of the spans the same way
(`submission.spool` does: each stand-in body must come back as exactly one
attachment): a message odd enough to be split otherwise is read whole, as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser

_HEADERS = BytesHeaderParser(policy=policy.compat32)
_MAX_HEADER_BYTES = 256 * 1024  # an entity's header block kept to read it; past it, no split
_KEPT_INLINE = frozenset({"text/plain", "text/html"})


@dataclass(frozen=True, slots=True)
class Span:
    """Bytes [start, end) of the message: one leaf body, its last line break included
    (the stdlib gives that break to the boundary line that follows)."""

    start: int
    end: int


@dataclass
class _Entity:
    headers: list[bytes] = field(default_factory=list)
    header_bytes: int = 0


class _Walk:
    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        # Each enclosing multipart's boundary line, as a pattern; the innermost last.
        self.boundaries: list[re.Pattern[bytes]] = []
        self.entity: _Entity | None = _Entity()  # headers being read; None: in a body
        self.body_start = 0
        self.divertible = False
        self.spans: list[Span] = []
        self.too_odd = False

    def line(self, offset: int, line: bytes) -> None:
        if b"\r" in line[:-2] or line.endswith(b"\r"):
            self.too_odd = True  # the stdlib ends a line at a bare CR too; lines here don't
            return
        if self.entity is not None:
            self._header_line(offset, line)
            return
        closing = self._boundary(line)
        if closing is None:
            return
        self._end_body(offset)
        depth, final = closing
        del self.boundaries[depth + 1:]
        if final:
            self.boundaries.pop()  # the multipart's epilogue follows, up to an outer boundary
            self.divertible = False
            self.body_start = offset + len(line)
        else:
            self.entity = _Entity()

    def end(self, offset: int) -> None:
        if self.entity is None:
            self._end_body(offset)

    def _header_line(self, offset: int, line: bytes) -> None:
        entity = self.entity
        assert entity is not None
        if line in (b"\r\n", b"\n"):
            self._begin_body(entity, offset + len(line))
            return
        entity.headers.append(line)
        entity.header_bytes += len(line)
        if entity.header_bytes > _MAX_HEADER_BYTES:
            self.too_odd = True

    def _begin_body(self, entity: _Entity, start: int) -> None:
        parsed = _HEADERS.parsebytes(b"".join(entity.headers) + b"\r\n")
        content_type = parsed.get_content_type()
        self.entity, self.body_start, self.divertible = None, start, False
        if parsed.get_content_maintype() == "multipart":
            boundary = parsed.get_param("boundary")
            if isinstance(boundary, str) and boundary:
                separator = b"--" + boundary.encode("utf-8", "surrogateescape")
                self.boundaries.append(
                    re.compile(re.escape(separator) + rb"(--)?[ \t]*(?:\r\n|\r|\n)?"))
            return
        encoding = str(parsed.get("content-transfer-encoding", "")).strip().lower()
        self.divertible = (encoding == "base64" and content_type not in _KEPT_INLINE
                           and parsed.get_content_maintype() != "message")

    def _end_body(self, end: int) -> None:
        if self.divertible and end - self.body_start > self.threshold:
            self.spans.append(Span(self.body_start, end))
        self.divertible = False

    def _boundary(self, line: bytes) -> tuple[int, bool] | None:
        """(depth of the multipart whose boundary this line is, whether it closes it)."""
        if not line.startswith(b"--"):
            return None
        for depth in range(len(self.boundaries) - 1, -1, -1):
            match = self.boundaries[depth].fullmatch(line)
            if match is not None:
                return depth, bool(match.group(1))
        return None


def large_parts(lines: Iterable[bytes], threshold: int) -> list[Span] | None:
    """The spans of the large base64 leaf bodies, in order; None when the message is
    too odd to split (a header block over 256 KB, a bare CR)."""
    walk = _Walk(threshold)
    offset = 0
    for line in lines:
        walk.line(offset, line)
        if walk.too_odd:
            return None
        offset += len(line)
    walk.end(offset)
    return walk.spans
