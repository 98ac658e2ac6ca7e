"""core.mime_split: the large base64 bodies of a message found line by line, checked
against what the stdlib's parser reads from the same bytes."""

from __future__ import annotations

import base64
import io
import os
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from hypothesis import given, settings
from hypothesis import strategies as st

from outbox.core.mime_split import large_parts

THRESHOLD = 1000


def spans_decoded(raw: bytes, threshold: int = THRESHOLD) -> list[bytes]:
    spans = large_parts(raw.splitlines(keepends=True), threshold)
    assert spans is not None
    return [base64.b64decode(raw[s.start:s.end]) for s in spans]


def expected(raw: bytes, threshold: int = THRESHOLD) -> list[bytes]:
    """The stdlib's view: leaves in order (an attached message is one leaf), base64,
    neither text/plain nor text/html nor a message, encoded longer than `threshold`
    (the span holds the line break the parser gives to the boundary line)."""
    found: list[bytes] = []

    def walk(part: Message) -> None:
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            for sub in part.get_payload():
                walk(sub)
            return
        encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
        payload = part.get_payload()
        if (encoding == "base64" and isinstance(payload, str)
                and part.get_content_type() not in ("text/plain", "text/html")
                and part.get_content_maintype() != "message"
                and len(payload) + 2 > threshold):
            found.append(bytes(part.get_payload(decode=True)))

    walk(BytesParser(policy=policy.SMTP).parsebytes(raw))
    return found


def message(body: str = "Hello.\n") -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "a@example.test", "b@example.test", "files"
    m.set_content(body)
    return m


def as_bytes(m: EmailMessage) -> bytes:
    return m.as_bytes(policy=policy.SMTP)


def test_large_attachments_are_found_and_small_ones_left() -> None:
    big, other, small = os.urandom(5000), os.urandom(3000), os.urandom(100)
    m = message()
    for name, data in (("a.bin", big), ("s.bin", small), ("b.pdf", other)):
        m.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    raw = as_bytes(m)
    assert spans_decoded(raw) == [big, other] == expected(raw)


def test_inline_images_in_related_alternative_are_found() -> None:
    image = os.urandom(4000)
    m = message("text body\n")
    m.add_alternative("<p>html <img src='cid:logo'></p>", subtype="html")
    html = m.get_payload()[1]
    html.add_related(image, maintype="image", subtype="png", cid="<logo>")
    raw = as_bytes(m)
    assert spans_decoded(raw) == [image] == expected(raw)


def test_bodies_and_attached_messages_are_left_to_the_parser() -> None:
    """A large base64 text/plain or text/html may be the body; an attached message is
    read as one .eml file, its own attachments included."""
    inner = message("inner\n")
    inner.add_attachment(os.urandom(4000), maintype="application", subtype="zip",
                         filename="in.zip")
    m = EmailMessage()
    m["From"], m["To"] = "a@example.test", "b@example.test"
    m.set_content(("é" * 3000) + "\n", cte="base64")
    m.add_alternative(("<p>ü</p>" * 600), subtype="html", cte="base64")
    m.add_attachment(inner)
    after = os.urandom(2500)
    m.add_attachment(after, maintype="application", subtype="octet-stream", filename="z")
    raw = as_bytes(m)
    assert spans_decoded(raw) == [after] == expected(raw)


def test_a_single_part_base64_message_is_one_span() -> None:
    data = os.urandom(3000)
    m = EmailMessage()
    m["From"] = "a@example.test"
    m.set_content(data, maintype="application", subtype="pdf")
    raw = as_bytes(m)
    assert spans_decoded(raw) == [data] == expected(raw)


def test_preamble_epilogue_and_near_boundaries_do_not_split() -> None:
    data = os.urandom(3000)
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    raw = (b"From: a@example.test\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="BB"\r\n\r\n'
           b"--BBX is not a boundary\r\n--B neither\r\n"
           b"--BB  \r\nContent-Type: text/plain\r\n\r\nbody\r\n--BB\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
           b"\r\n" + encoded + b"--BB--\t\r\nepilogue\r\n--BB\r\nmore epilogue\r\n")
    assert spans_decoded(raw) == [data] == expected(raw)


def test_a_huge_header_block_is_not_split() -> None:
    raw = b"From: a@example.test\r\n" + b"X-Long: " + b"y" * 300_000 + b"\r\n\r\nbody\r\n"
    assert large_parts(raw.splitlines(keepends=True), THRESHOLD) is None


leaf = st.one_of(
    st.tuples(st.just("text"), st.integers(0, 3000)),
    st.tuples(st.just("file"), st.integers(0, 4000)),
    st.tuples(st.just("html"), st.integers(0, 3000)),
)
tree = st.recursive(leaf, lambda children: st.tuples(
    st.sampled_from(["mixed", "related", "alternative"]),
    st.lists(children, min_size=1, max_size=4)), max_leaves=8)


def build(node: tuple[object, object]) -> EmailMessage:
    kind, value = node
    part = EmailMessage()
    if kind == "text":
        assert isinstance(value, int)
        part.set_content("t" * value + "\n", cte="base64")
    elif kind == "html":
        assert isinstance(value, int)
        part.set_content("<p>" + "h" * value + "</p>\n", subtype="html")
    elif kind == "file":
        assert isinstance(value, int)
        part.set_content(os.urandom(value), maintype="application", subtype="octet-stream")
    else:
        assert isinstance(value, list)
        part.make_mixed()
        part.set_type(f"multipart/{kind}")
        for child in value:
            part.attach(build(child))
    return part


@settings(max_examples=60, deadline=None)
@given(tree)
def test_any_structure_splits_as_the_stdlib_reads_it(node: tuple[object, object]) -> None:
    m = build(node)
    m["From"] = "a@example.test"
    raw = as_bytes(m)
    assert spans_decoded(raw) == expected(raw)


def test_a_body_is_split_only_when_longer_than_the_threshold() -> None:
    data = os.urandom(3000)
    m = message()
    m.add_attachment(data, maintype="application", subtype="octet-stream", filename="a")
    raw = as_bytes(m)
    (span,) = large_parts(raw.splitlines(keepends=True), 0) or []
    length = span.end - span.start
    assert spans_decoded(raw, length - 1) == [data] == expected(raw, length - 1)
    assert spans_decoded(raw, length) == [] == expected(raw, length)


def test_a_bare_cr_is_too_odd_to_split() -> None:
    """The stdlib ends a line there (a boundary could hide behind it); lines here end
    at LF only, so such a message is read whole."""
    m = message()
    m.add_attachment(os.urandom(3000), maintype="application", subtype="octet-stream",
                     filename="a")
    raw = as_bytes(m)
    assert large_parts(io.BytesIO(raw).readlines(), THRESHOLD)  # as a file gives them
    odd = raw.replace(b"\r\n\r\n", b"\r\n\rx\r\n", 1)
    assert large_parts(io.BytesIO(odd).readlines(), THRESHOLD) is None
    assert large_parts([b"From: a\r\n", b"\r\n", b"body\r"], THRESHOLD) is None
