"""The body as written after DATA (delivery.smtp.data.dot_stuff): the same bytes as
aiosmtplib's own preparation, whether its line endings need rewriting or not."""

from __future__ import annotations

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from outbox.delivery.smtp.data import dot_stuff

pieces = st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"a", b"From: x", b" "])


def reference(message: bytes) -> bytes:
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message))


@given(st.lists(pieces, max_size=30).map(b"".join))
def test_every_body_comes_out_as_aiosmtplib_would_write_it(message: bytes) -> None:
    assert dot_stuff(message) == reference(message)


@given(st.lists(st.sampled_from([b"a", b".", b"b c", b""]), min_size=1, max_size=12))
def test_a_body_of_crlf_lines_is_only_dot_stuffed(lines: list[bytes]) -> None:
    message = b"".join(line + b"\r\n" for line in lines)
    assert dot_stuff(message) == b"".join(
        (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


def test_bare_line_endings_and_a_missing_last_one_are_made_crlf() -> None:
    assert dot_stuff(b"a\nb\rc\r\n.d") == b"a\r\nb\r\nc\r\n..d\r\n"
    assert dot_stuff(b"") == b"\r\n"
    assert dot_stuff(b"a\r\n\r") == b"a\r\n\r\n"
