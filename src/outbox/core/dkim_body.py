"""DKIM body hashing while the message streams (RFC 6376 3.4.3-3.4.4, 3.7): the
canonical body is fed to the hash chunk by chunk, so a 100 MB message is never held in
memory to be signed. Pure: hashlib only.

`MessageHasher` takes the whole message as it goes on the wire (headers, blank line,
body; CRLF line ends), keeps the header block (small) for the signer, and hashes the
body canonicalized as dkimpy's `canonicalization.Simple` / `Relaxed` would have it
for the whole body at once:

- complete lines (up to a CRLF) are canonicalized as a block: relaxed removes the
  whitespace before each CRLF and compresses runs of spaces and tabs to one space
  (neither can reach across a CRLF, so blocks give what the whole body gives);
- empty lines are held back until non-empty content follows: those at the very end
  are ignored (both algorithms);
- at the end a last line without CRLF gets one; an empty body is "\\r\\n" (simple) or
  nothing (relaxed).
"""

from __future__ import annotations

import base64
import hashlib
import re

_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_WSP = re.compile(rb"[\t ]+")
MAX_HEADER_BLOCK = 1_000_000  # bytes of headers before the blank line


class HeaderBlockTooLarge(ValueError):
    """The message's header block has no end within MAX_HEADER_BLOCK bytes."""


class BodyHasher:
    """The hash of a body, canonicalized `simple` or `relaxed`, fed in chunks."""

    def __init__(self, algorithm: str = "relaxed", hash_name: str = "sha256") -> None:
        if algorithm not in {"simple", "relaxed"}:
            raise ValueError(f"unknown body canonicalization {algorithm!r}")
        self.relaxed = algorithm == "relaxed"
        self._hash = hashlib.new(hash_name)
        self._partial = b""  # the current line, until its CRLF arrives
        self._held_crlfs = 0  # empty line ends not yet known to be followed by content
        self._emitted = False  # any non-empty content hashed
        self.length = 0  # canonical bytes hashed (the l= value)

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk if self._partial else chunk
        cut = data.rfind(b"\r\n")
        if cut < 0:
            self._partial = data
            return
        block, self._partial = data[: cut + 2], data[cut + 2 :]
        if self.relaxed and (b" " in block or b"\t" in block):  # base64 has neither
            block = _WSP.sub(b" ", _TRAILING_WSP.sub(b"\r\n", block))
        end = len(block)
        while end >= 2 and block[end - 2 : end] == b"\r\n":
            end -= 2
        if end:
            self._emit(block[:end])
        self._held_crlfs += (len(block) - end) // 2

    def _emit(self, content: bytes) -> None:
        if self._held_crlfs:
            self._update(b"\r\n" * self._held_crlfs)
            self._held_crlfs = 0
        self._update(content)
        self._emitted = True

    def _update(self, data: bytes) -> None:
        self._hash.update(data)
        self.length += len(data)

    def digest(self) -> bytes:
        """The hash of the canonical body; call once, after the last chunk."""
        last = self._partial
        if self.relaxed and last:
            last = _WSP.sub(b" ", last)
        if last:
            self._emit(last)
        if self._emitted:
            self._update(b"\r\n")
        elif not self.relaxed:
            self._update(b"\r\n")  # simple: an empty body is one CRLF
        return self._hash.digest()

    def b64digest(self) -> bytes:
        return base64.b64encode(self.digest())


class MessageHasher:
    """Splits a streamed message into its header block (kept) and its body (hashed)."""

    def __init__(self, body: BodyHasher) -> None:
        self.body = body
        self._head = b""
        self.headers: bytes | None = None  # the header block, with its last CRLF

    def feed(self, chunk: bytes) -> None:
        if self.headers is not None:
            self.body.feed(chunk)
            return
        self._head += chunk
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEADER_BLOCK:
                raise HeaderBlockTooLarge("the header block does not end within "
                                          f"{MAX_HEADER_BLOCK:,} bytes")
            return
        self.headers, rest = self._head[: end + 2], self._head[end + 4 :]
        self._head = b""
        if rest:
            self.body.feed(rest)

    def finish(self) -> tuple[bytes, bytes]:
        """The header block and the body hash (base64)."""
        if self.headers is None:  # no blank line: everything is headers, the body empty
            self.headers = self._head if self._head.endswith(b"\r\n") else self._head + b"\r\n"
        return self.headers, self.body.b64digest()
