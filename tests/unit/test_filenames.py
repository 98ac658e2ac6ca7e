"""Attachment filenames are decoded before they are judged, and the decoded name is
the one delivered: RFC 2047 encoded-words, RFC 2231 values, NFKC, invisible format
characters (RTL override), NUL, trailing dots and spaces."""

from __future__ import annotations

import base64
import urllib.parse
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outbox.core.attachments import AttachmentIn, last_extension
from outbox.core.compose import Limits, Submission, plan_message
from outbox.core.filenames import as_c_string, decode_filename
from outbox.core.routing import RoutingTable
from outbox.errors import AttachmentBlocked, InputError

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
BLOCKED = (".exe", ".bat", ".js", ".scr", ".com", ".cmd", ".vbs", ".msi")
LIMITS = Limits(blocked_extensions=frozenset(BLOCKED))
TXT = base64.b64encode(b"plain text, no magic bytes").decode()


def plan(filename: str):
    return plan_message(
        Submission(sender="me@example.com", to="bob@example.org", subject="Hi", text="body",
                   attachments=[AttachmentIn(filename, TXT, "text/plain")]),
        limits=LIMITS, routing=RoutingTable((), "default"), known_relays=["default"],
        now=NOW, make_message_id=lambda domain: f"<id@{domain}>")


# --- decoding, case by case -------------------------------------------------------------------

@pytest.mark.parametrize(("given_name", "shown"), [
    ("report.pdf", "report.pdf"),
    ("Zürich Q3.xlsx", "Zürich Q3.xlsx"),
    # RFC 2047, B and Q, any case, charsets, split words, *language
    ("=?utf-8?b?ZXZpbC5qcw==?=", "evil.js"),
    ("=?UTF-8?B?ZXZpbC5qcw?=", "evil.js"),  # padding left off
    ("=?utf-8?q?evil=2Ejs?=", "evil.js"),
    ("=?iso-8859-1?Q?r=E9sum=E9_final.bat?=", "résumé final.bat"),
    ("=?utf-8?b?ZXZp?= =?utf-8?b?bC5qcw==?=", "evil.js"),
    ("=?utf-8*en?q?evil.js?=", "evil.js"),
    ("invoice=?utf-8?q?=2Eexe?=", "invoice.exe"),
    ("=?no-such-charset?q?evil.js?=", "evil.js"),
    # decoded as leniently as the most lenient client: what is delivered has no
    # encoded-word left for a client to decode differently
    ("=?utf-8?b?ZX!Zp bC5qcw==?=", "evil.js"),
    ("=?utf-8?b?Z?=", "=?utf-8?b?Z?="),  # one base64 character is not even a byte
    # an encoding of an encoding
    ("=?utf-8?b?" + base64.b64encode(b"=?utf-8?q?evil.js?=").decode() + "?=", "evil.js"),
    # RFC 2231 extended values
    ("utf-8''evil%2Ejs", "evil.js"),
    ("iso-8859-1'fr'r%E9sum%E9.scr", "résumé.scr"),
    ("it's'a.txt", "it's'a.txt"),  # "it" is no charset: a plain name
    # NFKC: fullwidth and other compatibility forms
    ("evil\uff0e\uff4a\uff53", "evil.js"),
    ("evil.\u24d9s", "evil.js"),  # circled j
    # invisible format characters
    ("photo\u202egpj.exe", "photogpj.exe"),
    ("evil.j\u200bs", "evil.js"),
    ("evil.\u2066js\u2069", "evil.js"),
    ("\ufeffevil.js", "evil.js"),
    ("evil.j\u00ads", "evil.js"),  # soft hyphen
    # NUL stays, for the caller to judge the name up to it and then refuse it
    ("evil.js\x00.pdf", "evil.js\x00.pdf"),
    # trailing dots and spaces
    ("evil.js.", "evil.js"),
    ("evil.js . . ", "evil.js"),
    ("  evil.js", "evil.js"),
])
def test_a_name_is_what_the_client_will_show(given_name: str, shown: str) -> None:
    assert decode_filename(given_name) == shown


@pytest.mark.parametrize("name", ["a\r\nb.txt", "a\nb.txt", "x\x07.txt", "a\x00.txt"])
def test_control_characters_other_than_nul_are_left_for_the_caller_to_refuse(name: str) -> None:
    assert decode_filename(name) == name


def test_decoding_stops_at_a_fixed_point() -> None:
    name = "evil.js"
    for _ in range(20):
        name = "=?utf-8?b?" + base64.b64encode(name.encode()).decode() + "?="
    assert decode_filename(name) != "evil.js"  # bounded work: 8 rounds at most
    assert last_extension(decode_filename(name)) != ".js"


# --- through plan_message: refused, named, delivered as checked ----------------------------

TRICKS = {
    "encoded-word": "=?utf-8?b?ZXZpbC5qcw==?=",
    "rfc2231": "utf-8''evil%2Ejs",
    "nfkc": "evil\uff0ejs",
    "trailing dot": "evil.js.",
    "rtl override": "invoice\u202efdp.js",
    "nul": "evil.js\x00.txt",
}


@pytest.mark.parametrize("name", TRICKS.values(), ids=TRICKS.keys())
def test_each_trick_is_refused_naming_the_decoded_name(name: str) -> None:
    with pytest.raises(AttachmentBlocked) as caught:
        plan(name)
    assert caught.value.code == "attachment_blocked"
    assert caught.value.field == "attachments[0].filename"
    assert "'" + as_c_string(decode_filename(name)) + "'" in caught.value.message
    assert ".js" in caught.value.message


def test_the_decoded_name_is_the_name_delivered() -> None:
    planned = plan("=?utf-8?q?r=C3=A9sum=C3=A9?= \u202e.txt.")
    assert planned.content.attachments[0].filename == "résumé .txt"


def test_a_nul_after_a_harmless_name_is_still_refused() -> None:
    with pytest.raises(InputError, match="line break") as caught:
        plan("=?utf-8?q?report=00.txt?=")
    assert not isinstance(caught.value, AttachmentBlocked)


def test_a_decoded_path_is_still_refused() -> None:
    with pytest.raises(InputError, match="path"):
        plan("=?utf-8?b?" + base64.b64encode(b"../../x.txt").decode() + "?=")


# --- hypothesis: no encoding of a blocked name gets through -------------------------------

stems = st.text(st.characters(codec="utf-8", categories=("L", "N"), max_codepoint=0x2FF),
                min_size=1, max_size=12)
blocked = st.sampled_from(BLOCKED).flatmap(
    lambda ext: st.sampled_from([ext, ext.upper(), ext.title()]))


def _b(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?="


def _q(text: str, charset: str = "utf-8") -> str:
    raw = "".join(chr(b) if chr(b).isalnum() and b < 128 else f"={b:02X}"
                  for b in text.encode(charset))
    return f"=?{charset}?q?{raw}?="


def _split_b(text: str) -> str:
    half = len(text) // 2
    return f"{_b(text[:half])} {_b(text[half:])}" if half else _b(text)


def _rfc2231(text: str) -> str:
    return "utf-8'en'" + urllib.parse.quote(text, safe="")


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _rtl(text: str) -> str:
    """'photo<RLO>gpj.exe' shows as 'photoexe.jpg'; without an extension, an override
    around the whole name."""
    stem, dot, ext = text.rpartition(".")
    return f"{stem}\u202e{ext[::-1]}.{ext}" if dot else f"\u202e{text}\u202c"


ENCODINGS = {
    "b": _b, "q": _q, "split": _split_b, "2231": _rfc2231, "fullwidth": _fullwidth,
    "rtl": _rtl, "nul": lambda t: t + "\x00.pdf", "dots": lambda t: t + ". .",
    "zwsp": lambda t: t[:-1] + "\u200b" + t[-1], "latin1": lambda t: _q(t, "iso-8859-1")
    if t.isascii() else _q(t),
}


@settings(max_examples=400, deadline=None)
@given(stem=stems, extension=blocked,
       layers=st.lists(st.sampled_from(sorted(ENCODINGS)), min_size=1, max_size=3))
def test_no_encoding_of_a_blocked_name_gets_through(stem: str, extension: str,
                                                    layers: list[str]) -> None:
    name = stem + extension
    for layer in layers:
        name = ENCODINGS[layer](name)
    with pytest.raises((AttachmentBlocked, InputError)) as caught:
        plan(name)
    if isinstance(caught.value, AttachmentBlocked):
        assert extension.lower() in caught.value.message.lower()
