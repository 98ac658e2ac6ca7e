"""Large JSON submits in bounded memory.

A `POST /v1/messages` or `/v1/messages/batch` body over `[limits]
json_spool_threshold` (or chunked, size unknown) is read into a spooled
temporary file (memory up to the threshold, then disk), not into one bytes
object. Its `content_base64` values (`core.json_strings` finds them once the body is
read) are then decoded piece by piece into the blob store, and the JSON the
route parses carries a token in their place (`service.files` resolves it as the
stored file). A value that is not base64 becomes "!", so the route refuses it
as it refuses any bad base64, naming the field.

Idempotency hashes see each spooled file as "sha256:<hex>" (`stable`), so a
replay of the same body matches whatever its token was.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import IO, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbox.core.json_strings import Base64Decoder, InvalidBase64, Span, StringSpans
from outbox.service.files import AttachmentFiles

PATHS = ("/v1/messages", "/v1/messages/batch")
PIECE = 256 * 1024  # bytes read, decoded or replayed at a time
MIN_SPOOLED = 16 * 1024  # shorter base64 values stay in the JSON
NOT_BASE64 = b"!"
KEY = b"content_base64"


class SpooledJson:
    def __init__(self, app: ASGIApp, files: AttachmentFiles, clock: Callable[[], datetime],
                 threshold: int) -> None:
        self.app = app
        self.files = files
        self.clock = clock
        self.threshold = threshold

    def _applies(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PATHS:
            return False
        length = _header(scope, b"content-length")
        return length is None or not length.isdigit() or int(length) > self.threshold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._applies(scope):
            await self.app(scope, receive, send)
            return
        with tempfile.SpooledTemporaryFile(max_size=self.threshold) as raw, \
                tempfile.SpooledTemporaryFile(max_size=self.threshold) as out:
            spans = await _read(receive, raw)
            if spans is None:
                return  # the client went away
            tokens = await self._decoded(raw, spans, out)
            try:
                await self.app(_without_length(scope), replay(out, receive), send)
            finally:
                self.files.forget(tokens)

    async def _decoded(self, raw: IO[bytes], spans: list[Span], out: IO[bytes]) -> list[str]:
        """`raw` copied to `out`, each long base64 value replaced by its token."""
        tokens: list[str] = []
        at = 0
        for span in spans:
            if span.end - span.start < MIN_SPOOLED:
                continue
            _copy(raw, at, span.start, out)
            try:
                token = await self.files.spool(_decode(raw, span), self.clock())
            except InvalidBase64:
                out.write(NOT_BASE64)
            else:
                tokens.append(token)
                out.write(token.encode())
            at = span.end
        raw.seek(0, 2)
        _copy(raw, at, raw.tell(), out)
        out.seek(0)
        return tokens


async def _read(receive: Receive, raw: IO[bytes]) -> list[Span] | None:
    """The whole body into `raw`, and the spans of its `content_base64` values: those
    are looked for (a second pass, in steps of whole strings) only if the key's bytes
    occur at all, so a long recipient list costs one substring search per chunk."""
    tail, seen = b"", False
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body = message.get("body", b"")
        raw.write(body)
        if not seen:  # the key, or a key cut by the chunk boundary
            seen = KEY in body or KEY in tail + body[:len(KEY)]
            tail = (tail + body)[-len(KEY):] if len(body) < len(KEY) else body[-len(KEY):]
        if not message.get("more_body", False):
            return _spans(raw) if seen else []


def _spans(raw: IO[bytes]) -> list[Span]:
    scanner = StringSpans(KEY)
    raw.seek(0)
    while piece := raw.read(PIECE):
        scanner.feed(piece)
    return scanner.spans


async def _decode(raw: IO[bytes], span: Span) -> AsyncIterator[bytes]:
    decoder = Base64Decoder()
    at = span.start
    while at < span.end:
        raw.seek(at)
        piece = raw.read(min(PIECE, span.end - at))
        at += len(piece)
        data = decoder.feed(piece)
        if data:
            yield data
    decoder.finish()


def _copy(raw: IO[bytes], start: int, end: int, out: IO[bytes]) -> None:
    raw.seek(start)
    while start < end:
        piece = raw.read(min(PIECE, end - start))
        out.write(piece)
        start += len(piece)


def replay(out: IO[bytes], receive: Receive) -> Receive:
    """`receive` giving the body from `out` (from where it stands) first, in pieces;
    then the client's own messages (a disconnect)."""
    done = False

    async def replay() -> Message:
        nonlocal done
        if done:
            return await receive()
        piece = out.read(PIECE)
        more = len(piece) == PIECE
        done = not more
        return {"type": "http.request", "body": piece, "more_body": more}

    return replay


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _without_length(scope: Scope) -> Scope:
    headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"content-length"]
    return {**scope, "headers": headers}


def stable(sent: dict[str, Any], files: AttachmentFiles) -> dict[str, Any]:
    """The body as idempotency hashes see it: spooled files as "sha256:<hex>"."""
    attachments = sent.get("attachments")
    if not attachments:
        return sent
    shown = []
    for attachment in attachments:
        stored = files.spooled(str(attachment.get("content_base64") or ""))
        shown.append(attachment if stored is None else
                     {**attachment, "content_base64": f"sha256:{stored.sha256}"})
    return {**sent, "attachments": shown}
