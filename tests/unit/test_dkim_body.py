"""core.dkim_body: the streamed body hash equals dkimpy's canonicalization of the whole
body, for any body cut into any chunks (simple and relaxed)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from outbox.core.dkim_body import BodyHasher, MessageHasher

ALGORITHMS = {"simple": Simple, "relaxed": Relaxed}
PIECES = st.lists(st.sampled_from([b"a", b"b c", b" ", b"\t", b"\r\n", b"\r", b"\n", b".",
                                   b"  \t ", b"\r\n\r\n", b"xyz "]), max_size=40)


def expected(body: bytes, algorithm: str) -> bytes:
    return base64.b64encode(hashlib.sha256(
        ALGORITHMS[algorithm].canonicalize_body(body)).digest())


def hashed(chunks: list[bytes], algorithm: str) -> bytes:
    hasher = BodyHasher(algorithm)
    for chunk in chunks:
        hasher.feed(chunk)
    return hasher.b64digest()


@settings(max_examples=500, deadline=None)
@given(PIECES, st.lists(st.integers(0, 60), max_size=6),
       st.sampled_from(["simple", "relaxed"]))
def test_streamed_hash_equals_dkimpy_on_the_whole_body(pieces: list[bytes], cuts: list[int],
                                                       algorithm: str) -> None:
    body = b"".join(pieces)
    points = sorted({min(c, len(body)) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert hashed(chunks, algorithm) == expected(body, algorithm)


@pytest.mark.parametrize("algorithm", ["simple", "relaxed"])
@pytest.mark.parametrize("body", [b"", b"\r\n", b"\r\n\r\n", b"a", b"a\r\n\r\n\r\n",
                                  b"  \r\n", b"a \t\r\nb", b"\r\n\r\na\r\n"])
def test_edge_bodies(body: bytes, algorithm: str) -> None:
    assert hashed([body], algorithm) == expected(body, algorithm)
    assert hashed([body[i:i + 1] for i in range(len(body))], algorithm) == \
        expected(body, algorithm)


def test_the_message_hasher_keeps_the_headers_and_hashes_the_body() -> None:
    message = b"From: a@x.test\r\nSubject: hi\r\n\r\nline one  \r\nline two\r\n\r\n"
    hasher = MessageHasher(BodyHasher("relaxed"))
    for i in range(0, len(message), 7):
        hasher.feed(message[i:i + 7])
    headers, body_hash = hasher.finish()
    assert headers == b"From: a@x.test\r\nSubject: hi\r\n"
    assert body_hash == expected(b"line one  \r\nline two\r\n\r\n", "relaxed")
