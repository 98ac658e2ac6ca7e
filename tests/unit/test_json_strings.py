"""The streaming JSON scans: string values of one key found on bytes cut anywhere, base64
decoded in pieces, and nesting depth; checked against json and base64 themselves."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outbox.core.json_depth import DepthScanner, TooDeep
from outbox.core.json_strings import Base64Decoder, InvalidBase64, StringSpans


def feed_cut(scanner: StringSpans | DepthScanner, data: bytes, cuts: list[int]) -> None:
    at = 0
    for cut in [*sorted(set(c % (len(data) + 1) for c in cuts)), len(data)]:
        scanner.feed(data[at:cut])
        at = max(at, cut)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["content_base64", "x", "content", 'q"k', "a\\b"]), inner, max_size=4),
    max_leaves=20)


def values_of(document: object, key: str) -> list[str]:
    found: list[str] = []
    if isinstance(document, dict):
        for name, value in document.items():
            if name == key and isinstance(value, str) and "\\u" not in json.dumps(value):
                found.append(value)
            found += values_of(value, key)
    elif isinstance(document, list):
        for item in document:
            found += values_of(item, key)
    return found


@settings(max_examples=300, deadline=None)
@given(document=json_values, cuts=st.lists(st.integers(0, 10_000), max_size=8),
       indent=st.sampled_from([None, 1]))
def test_spans_are_the_string_values_of_the_key(document: object, cuts: list[int],
                                                indent: int | None) -> None:
    data = json.dumps(document, indent=indent).encode()
    scanner = StringSpans(b"content_base64")
    feed_cut(scanner, data, cuts)
    found = [json.loads(b'"' + data[s.start:s.end] + b'"') for s in scanner.spans]
    assert found == values_of(document, "content_base64")


def test_a_key_that_only_looks_alike_is_not_the_key() -> None:
    data = b'{"content_base64x": "a", "y": "content_base64", "z": ["content_base64", "b"]}'
    scanner = StringSpans(b"content_base64")
    scanner.feed(data)
    assert scanner.spans == []


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), wrap=st.sampled_from([0, 76]),
       cuts=st.lists(st.integers(0, 5000), max_size=6))
def test_base64_decodes_in_pieces_as_in_one(data: bytes, wrap: int, cuts: list[int]) -> None:
    text = base64.b64encode(data).decode()
    if wrap:
        text = "\n".join(text[i:i + wrap] for i in range(0, len(text), wrap))
    escaped = json.dumps(text)[1:-1].replace("/", "\\/").encode()
    decoder = Base64Decoder()
    out = b""
    at = 0
    for cut in [*sorted(set(c % (len(escaped) + 1) for c in cuts)), len(escaped)]:
        out += decoder.feed(escaped[at:cut])
        at = max(at, cut)
    decoder.finish()
    assert out == data


@pytest.mark.parametrize("text", [b"QUJD*", b"QUJ", b"QU\\u0041=", b"QUJD\\x"])
def test_what_is_not_base64_is_refused(text: bytes) -> None:
    decoder = Base64Decoder()
    with pytest.raises(InvalidBase64):
        decoder.feed(text)
        decoder.finish()


@settings(max_examples=200, deadline=None)
@given(document=json_values, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_depth_is_measured_on_any_cut(document: object, cuts: list[int]) -> None:
    data = json.dumps(document).encode()

    def depth(value: object) -> int:
        if isinstance(value, dict):
            return 1 + max((depth(v) for v in value.values()), default=0)
        if isinstance(value, list):
            return 1 + max((depth(v) for v in value), default=0)
        return 0

    deepest = depth(document)
    feed_cut(DepthScanner(deepest), data, cuts)  # exactly at the limit: fine
    if deepest:
        with pytest.raises(TooDeep):
            feed_cut(DepthScanner(deepest - 1), data, cuts)
