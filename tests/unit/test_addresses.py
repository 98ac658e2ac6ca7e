"""Recipient parsing, validation and de-duplication: tables plus hypothesis properties."""

from __future__ import annotations

import email
import re
import string
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outbox.core.addresses import (
    LINE_BREAKS,
    Address,
    RecipientKind,
    address_errors,
    format_addresses,
    parse_addresses,
    parse_mailbox,
    plan_recipients,
)
from outbox.errors import InvalidAddress

FORBIDDEN = LINE_BREAKS | {"\x00"}

# --- what parses: input -> [(display name, addr-spec)] ----------------------------------------

VALID = [
    ("done-when example", 'A <a@x.test>; "Doe, John" <j@x.test>, c@x.test',
     [("A", "a@x.test"), ("Doe, John", "j@x.test"), ("", "c@x.test")]),
    ("single bare", "a@x.test", [("", "a@x.test")]),
    ("angle only", "<a@x.test>", [("", "a@x.test")]),
    ("spaces inside angle", "< a@x.test >", [("", "a@x.test")]),
    ("name without space before angle", "Ann<a@x.test>", [("Ann", "a@x.test")]),
    ("quoted name, no space", '"Ann"<a@x.test>', [("Ann", "a@x.test")]),
    ("commas only", "a@x.test,b@x.test , c@x.test", [("", "a@x.test"), ("", "b@x.test"),
                                                     ("", "c@x.test")]),
    ("semicolons only", "a@x.test; b@x.test;c@x.test", [("", "a@x.test"), ("", "b@x.test"),
                                                        ("", "c@x.test")]),
    ("quoted name with semicolon", '"Ops; Night" <o@x.test>; b@x.test',
     [("Ops; Night", "o@x.test"), ("", "b@x.test")]),
    ("quoted name with escaped quote", r'"Say \"hi\", Bob" <b@x.test>',
     [('Say "hi", Bob', "b@x.test")]),
    ("quoted name with escaped backslash", r'"back\\slash" <b@x.test>',
     [("back\\slash", "b@x.test")]),
    ("quoted name with angle and colon", '"<a@evil.test>: x" <b@x.test>',
     [("<a@evil.test>: x", "b@x.test")]),
    ("empty quoted name", '"" <a@x.test>', [("", "a@x.test")]),
    ("mixed words and quoted", 'John "Q." Public <j@x.test>', [("John Q. Public", "j@x.test")]),
    ("whitespace folded in unquoted name", "Ann \t  Lee <a@x.test>", [("Ann Lee", "a@x.test")]),
    ("quoted whitespace kept inside", '"Ann  Lee" <a@x.test>', [("Ann  Lee", "a@x.test")]),
    ("quoted name stripped", '"  Ann " <a@x.test>', [("Ann", "a@x.test")]),
    ("outlook style name is the address", "a@x.test <a@x.test>", [("a@x.test", "a@x.test")]),
    ("group", "Team: a@x.test, b@x.test;", [("", "a@x.test"), ("", "b@x.test")]),
    ("group then more", 'Team: a@x.test; "C, D" <c@x.test>', [("", "a@x.test"),
                                                               ("C, D", "c@x.test")]),
    ("quoted group name", '"My, Team": a@x.test;', [("", "a@x.test")]),
    ("group left open at end", "Team: a@x.test, b@x.test", [("", "a@x.test"),
                                                             ("", "b@x.test")]),
    ("empty group", "undisclosed-recipients:;", []),
    ("empty group then address", "undisclosed-recipients:;, a@x.test", [("", "a@x.test")]),
    ("comment after address", "a@x.test (Ann at work)", [("", "a@x.test")]),
    ("comment before name", "(work) Ann <a@x.test>", [("Ann", "a@x.test")]),
    ("nested comment with escaped paren", r"a@x.test (c \) (n)), b@x.test",
     [("", "a@x.test"), ("", "b@x.test")]),
    ("comment with comma", "a@x.test (x, y), b@x.test", [("", "a@x.test"), ("", "b@x.test")]),
    ("tabs and spaces", "\t a@x.test \t,\tb@x.test\t", [("", "a@x.test"), ("", "b@x.test")]),
    ("newline after comma", "a@x.test,\r\n b@x.test", [("", "a@x.test"), ("", "b@x.test")]),
    ("newline before comma", "a@x.test\n, b@x.test", [("", "a@x.test"), ("", "b@x.test")]),
    ("pasted list, one per line", "a@x.test,\nb@x.test,\nc@x.test\n",
     [("", "a@x.test"), ("", "b@x.test"), ("", "c@x.test")]),
    ("leading newline", "\r\n a@x.test", [("", "a@x.test")]),
    ("group over lines", "Team:\n a@x.test,\n b@x.test;\n", [("", "a@x.test"), ("", "b@x.test")]),
    ("trailing separators", "a@x.test,;, ;", [("", "a@x.test")]),
    ("empty entries", ",, a@x.test ;; ,b@x.test", [("", "a@x.test"), ("", "b@x.test")]),
    ("only separators", " ; , ", []),
    ("empty string", "", []),
    ("idn domain to punycode", "a@Bücher.test", [("", "a@xn--bcher-kva.test")]),
    ("idn cjk domain", "Ann <a@例え.test>", [("Ann", "a@xn--r8jz45g.test")]),
    ("idn sharp s kept (IDNA 2008)", "a@faß.test", [("", "a@xn--fa-hia.test")]),
    ("punycode domain given", "a@xn--bcher-kva.test", [("", "a@xn--bcher-kva.test")]),
    ("uppercase domain lowered on the wire", "a@X.TEST", [("", "a@x.test")]),
    ("local part case kept", "John.Doe@X.Test", [("", "John.Doe@x.test")]),
    ("case variants are both kept by the parser", "a@x.test, A@x.test",
     [("", "a@x.test"), ("", "A@x.test")]),
    ("atext specials in local part", "o'brien+tag!#$%&*=?^_`{|}~-/@x.test",
     [("", "o'brien+tag!#$%&*=?^_`{|}~-/@x.test")]),
    ("non-ascii name", "Jürgen Müller <j@x.test>", [("Jürgen Müller", "j@x.test")]),
    ("encoded word kept literally", "=?utf-8?q?J=C3=BCrgen?= <j@x.test>",
     [("=?utf-8?q?J=C3=BCrgen?=", "j@x.test")]),
    ("special-use .test", "a@mail.test", [("", "a@mail.test")]),
    ("special-use bare test", "a@test", [("", "a@test")]),
    ("special-use .example", "a@x.example", [("", "a@x.example")]),
    ("special-use example.com", "a@example.com", [("", "a@example.com")]),
    ("special-use .invalid", "a@nowhere.invalid", [("", "a@nowhere.invalid")]),
    ("special-use .localhost", "a@app.localhost", [("", "a@app.localhost")]),
    ("special-use bare localhost", "root@localhost", [("", "root@localhost")]),
    ("special-use uppercase", "a@X.INVALID", [("", "a@x.invalid")]),
    ("64-char local part", "a" * 64 + "@x.test", [("", "a" * 64 + "@x.test")]),
    ("long local part (email-validator is lenient)", "a" * 70 + "@x.test",
     [("", "a" * 70 + "@x.test")]),
    ("254-octet address", "a" * 60 + "@" + ".".join(["b" * 60] * 3) + ".bb.invalid",
     [("", "a" * 60 + "@" + ".".join(["b" * 60] * 3) + ".bb.invalid")]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_parses(text: str, expected: list[tuple[str, str]]) -> None:
    addresses = parse_addresses(text, "to")
    assert [(a.display_name, a.addr_spec) for a in addresses] == expected


# --- what is refused: input -> (field, words in the message) ---------------------------------

INVALID = [
    ("missing @", "ann", "to[0]", "no @"),
    ("missing @ among good ones", "a@x.test, ann, b@x.test", "to[1]", "'ann'"),
    ("index skips empty entries", "a@x.test,, ;ann", "to[1]", "'ann'"),
    ("double @", "a@b@x.test", "to[0]", "more than one @"),
    ("nothing after @", "a@", "to[0]", "after the @-sign"),
    ("nothing before @", "@x.test", "to[0]", "before the @-sign"),
    ("space in local part", "john doe@x.test", "to[0]", "space"),
    ("name without angle brackets", "John a@x.test", "to[0]", "space"),
    ("quoted name without address", '"Doe, John" j@x.test', "to[0]", "no <address>"),
    ("quoted local part", '"john doe"@x.test', "to[0]", "quoted"),
    ("quoted local part in angle", '<"j d"@x.test>', "to[0]", "quoted local part"),
    ("unbalanced quote", '"Doe, John <j@x.test>, b@x.test', "to[0]", "never closed"),
    ("unbalanced quote after good one", 'a@x.test, "Doe <j@x.test>', "to[1]", "never closed"),
    ("unclosed angle", "Ann <a@x.test", "to[0]", "'<' that is never closed"),
    ("angle inside angle", "<a<b@x.test>", "to[0]", "never closed"),
    ("stray closing angle", "a@x.test>", "to[0]", "'>'"),
    ("unclosed comment", "a@x.test (oops", "to[0]", "'(' that is never closed"),
    ("stray closing paren", "a@x.test)", "to[0]", "')'"),
    ("two angle addresses", "<a@x.test> <b@x.test>", "to[0]", "comma"),
    ("text after angle", "Ann <a@x.test> Lee", "to[0]", "after the closing"),
    ("empty angle", "Ann <>", "to[0]", "empty <>"),
    ("nested group", "A: B: c@x.test;", "to[0]", "nest"),
    ("group without name", ": a@x.test;", "to[0]", "without a name"),
    ("colon after address", "a@x.test: b@x.test", "to[0]", "':' after an address"),
    ("trailing dot in domain", "a@x.test.", "to[0]", "period"),
    ("double dot in local", "a..b@x.test", "to[0]", "period"),
    ("underscore in domain", "a@x_y.test", "to[0]", "invalid characters"),
    ("hyphen at label start", "a@-x.test", "to[0]", "hyphen"),
    ("dotless non-special domain", "a@intranet", "to[0]", "period"),
    (".local is reserved", "a@printer.local", "to[0]", "special-use"),
    (".onion is reserved", "a@abc.onion", "to[0]", "special-use"),
    ("ip literal", "a@[192.0.2.1]", "to[0]", "not a valid address"),
    ("address too long", "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".test", "to[0]",
     "too long"),
    ("special-use address too long", "aaaa@" + ".".join(["b" * 60] * 4) + ".invalid", "to[0]",
     "longer than 254"),
    ("label too long", "a@" + "b" * 64 + ".test", "to[0]", "periods"),
    ("very long garbage", "x" * 100_000, "to[0]", "no @"),
    ("non-ascii local without smtputf8", "jörg@x.test", "to[0]", "SMTPUTF8"),
    ("lone surrogate in local", "\ud800@x.test", "to[0]", "unsafe"),
    ("control char in name", '"A\x07B" <a@x.test>', "to[0]", "control character"),
    # header injection: a line break or NUL anywhere it could reach a header
    ("crlf then Bcc header", "a@x.test\r\nBcc: victim@evil.test", "to[0]", "line break"),
    ("newline between two addresses", "a@x.test\nb@x.test", "to[0]", "line break"),
    ("crlf in quoted name", '"Ann\r\nBcc: v@evil.test" <a@x.test>', "to[0]", "line break"),
    ("escaped crlf in quoted name", '"Ann\\\r\\\nX" <a@x.test>', "to[0]", "line break"),
    ("newline in unquoted name", "Ann\nLee <a@x.test>", "to[0]", "line break"),
    ("newline before angle", "Ann\n<a@x.test>", "to[0]", "line break"),
    ("crlf inside angle", "<a@x.test\r\n>", "to[0]", "line break"),
    ("newline in comment", "a@x.test (x\ny)", "to[0]", "line break"),
    ("newline in group name", "Team\nBcc: a@x.test;", "to[0]", "line break"),
    ("unicode line separator", "Ann\u2028Lee <a@x.test>", "to[0]", "line break"),
    ("next line control", "a@x.test\x85b@x.test", "to[0]", "line break"),
    ("nul in address", "a@x.test\x00", "to[0]", "NUL"),
    ("nul in quoted name", '"A\x00" <a@x.test>', "to[0]", "NUL"),
    ("injection after good ones", "a@x.test, b@x.test\r\nBcc: v@evil.test", "to[1]", "line break"),
]


@pytest.mark.parametrize(("text", "field", "words"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_refuses(text: str, field: str, words: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_addresses(text, "to")
    error = caught.value
    assert error.field == field
    assert error.message.startswith(f"{field}: ")
    assert words in error.message
    assert "\n" not in error.message and "\r" not in error.message
    assert error.code == "invalid_address"


def test_error_names_the_address_and_gives_a_hint() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_addresses("ok@x.test, bob@", "cc")
    assert caught.value.field == "cc[1]"
    assert "'bob@'" in caught.value.message
    assert caught.value.hint


def test_long_input_is_shown_shortened() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_addresses("x" * 100_000, "to")
    assert len(caught.value.message) < 200


def test_many_addresses_in_one_string() -> None:
    text = ", ".join(f'"User {i}, Jr." <u{i}@x{i % 7}.test>' for i in range(2000))
    addresses = parse_addresses(text, "to")
    assert len(addresses) == 2000
    assert addresses[1999] == Address("User 1999, Jr.", "u1999", "x4.test")


# --- list input and field names ---------------------------------------------------------------


def test_list_elements_are_named_by_position() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_addresses(["a@x.test", "b@x.test; c@x.test, nope"], "to")
    assert caught.value.field == "to[1]"
    assert "'nope'" in caught.value.message


def test_list_elements_may_hold_several_addresses() -> None:
    addresses = parse_addresses(["a@x.test", 'B <b@x.test>; "C, c" <c@x.test>', ""], "to")
    assert [a.addr_spec for a in addresses] == ["a@x.test", "b@x.test", "c@x.test"]


def test_list_element_that_is_not_a_string() -> None:
    not_all_strings: list[Any] = ["a@x.test", 42]  # as a JSON body could hold
    with pytest.raises(InvalidAddress) as caught:
        parse_addresses(not_all_strings, "bcc")
    assert caught.value.field == "bcc[1]"


def test_none_is_no_addresses() -> None:
    assert parse_addresses(None, "cc") == []


def test_address_errors_lists_each_bad_address() -> None:
    errors = address_errors(["ok@x.test", "bad@", "x, y@, z@x.test"], "cc")
    assert [(e.field, e.message.split(" ", 2)[1]) for e in errors] == [
        ("cc[1]", "'bad@'"), ("cc[2]", "'x'"), ("cc[2]", "'y@'")]
    assert address_errors("a@x.test, b, c@, d@x.test", "to")[1].field == "to[2]"
    assert address_errors("a@x.test", "to") == []


# --- SMTPUTF8 ---------------------------------------------------------------------------------


def test_non_ascii_local_part_needs_smtputf8() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_addresses("Jörg <jörg@Bücher.test>", "to")
    assert "which Outbox does not send (SMTPUTF8 addresses" in caught.value.message
    assert "relay" not in caught.value.one_line()  # no relay makes a difference
    [address] = parse_addresses("Jörg <jörg@Bücher.test>", "to", allow_smtputf8=True)
    assert address.needs_smtputf8
    assert address.addr_spec == "jörg@xn--bcher-kva.test"


def test_non_ascii_domain_alone_does_not_need_smtputf8() -> None:
    [address] = parse_addresses("a@Bücher.test", "to")
    assert not address.needs_smtputf8
    assert address.domain == "Bücher.test"  # as given, for display
    assert address.ascii_domain == "xn--bcher-kva.test"


# --- parse_mailbox ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "display", "spec"), [
    ("a@x.test", "", "a@x.test"),
    ('"Doe, John" <j@X.test>', "Doe, John", "j@x.test"),
    (" \n Ann <a@x.test>\n", "Ann", "a@x.test"),
    ("a@x.test,", "", "a@x.test"),
])
def test_parse_mailbox(text: str, display: str, spec: str) -> None:
    address = parse_mailbox(text, "from")
    assert (address.display_name, address.addr_spec) == (display, spec)


@pytest.mark.parametrize(("text", "words"), [
    ("", "found none"),
    ("undisclosed-recipients:;", "found none"),
    ("a@x.test, b@x.test", "found 2"),
    ("bad@", "after the @-sign"),
    ("a@x.test\r\nBcc: v@evil.test", "line break"),
])
def test_parse_mailbox_refuses(text: str, words: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_mailbox(text, "reply_to")
    assert caught.value.field == "reply_to"
    assert words in caught.value.message


# --- the Address value ------------------------------------------------------------------------


@pytest.mark.parametrize(("display", "local", "domain", "expected"), [
    ("", "a", "x.test", "a@x.test"),
    ("Ann Lee", "a", "x.test", "Ann Lee <a@x.test>"),
    ("Doe, John", "j", "x.test", '"Doe, John" <j@x.test>'),
    ('Say "hi"', "s", "x.test", r'"Say \"hi\"" <s@x.test>'),
    ("back\\slash", "b", "x.test", r'"back\\slash" <b@x.test>'),
    ("J. R.", "j", "x.test", '"J. R." <j@x.test>'),
    ("Ann  Lee", "a", "x.test", '"Ann  Lee" <a@x.test>'),
    ("Ops; Night", "o", "x.test", '"Ops; Night" <o@x.test>'),
    ("=?utf-8?q?x?=", "e", "x.test", '"=?utf-8?q?x?=" <e@x.test>'),
    ("Jürgen", "j", "Bücher.TEST", "Jürgen <j@xn--bcher-kva.test>"),
    ("O'Neil", "o", "X.TEST", "O'Neil <o@x.test>"),
])
def test_formatted(display: str, local: str, domain: str, expected: str) -> None:
    assert Address(display, local, domain).formatted() == expected


@pytest.mark.parametrize(("display", "local", "domain"), [
    ("Ann\r\nBcc: v@evil.test", "a", "x.test"),
    ("", "a\r\n", "x.test"),
    ("", "a", "x.test\nBcc: v@evil.test"),
    ("", "a b", "x.test"),
    ("", "a", ""),
    ("A\x00", "a", "x.test"),
])
def test_address_validates_on_construction(display: str, local: str, domain: str) -> None:
    with pytest.raises(InvalidAddress):
        Address(display, local, domain)


def test_dedupe_key_folds_the_case_of_both_parts() -> None:
    """The local part too, as the address book does (tests/unit/test_recipient_case.py)."""
    assert Address("", "Ann", "X.Test").dedupe_key == Address("B", "Ann", "x.test").dedupe_key
    assert Address("", "Ann", "x.test").dedupe_key == Address("", "ann", "x.test").dedupe_key
    assert Address("", "a", "Bücher.test").dedupe_key == ("a", "xn--bcher-kva.test")


def test_header_survives_email_policy_smtp() -> None:
    """What `formatted()` gives is read back by the stdlib after RFC 2047 encoding."""
    addresses = parse_addresses(
        '"Doe, John" <j@x.test>, Jürgen Müller <j@Bücher.test>, "Say \\"hi\\"" <s@x.test>, '
        "plain@x.test", "to")
    message = EmailMessage(policy=policy.SMTP)
    message["To"] = format_addresses(addresses)
    raw = message.as_bytes()
    assert raw.isascii()
    parsed = email.message_from_bytes(raw, policy=policy.default)
    got = [(a.display_name, a.addr_spec) for a in parsed["To"].addresses]
    assert got == [(a.display_name, a.addr_spec) for a in addresses]


# --- plan_recipients --------------------------------------------------------------------------


def test_plan_dedupes_across_fields_first_occurrence_wins() -> None:
    plan = plan_recipients(
        to="Ann <ann@x.test>, ann@X.TEST",
        cc=["ANN@x.test", "Bob <bob@x.test>", "ann@x.test"],
        bcc="bob@X.test; carol@x.test, Carol@x.test",
    )
    assert [a.addr_spec for a in plan.to] == ["ann@x.test"]
    assert plan.to[0].display_name == "Ann"
    # The local part's case does not make another mailbox (Address.dedupe_key).
    assert [a.addr_spec for a in plan.cc] == ["bob@x.test"]
    assert [(r.address.addr_spec, r.kind) for r in plan.envelope] == [
        ("ann@x.test", RecipientKind.TO),
        ("bob@x.test", RecipientKind.CC),
        ("carol@x.test", RecipientKind.BCC),
    ]
    assert [a.addr_spec for a in plan.bcc] == ["carol@x.test"]


def test_plan_bcc_never_in_headers() -> None:
    plan = plan_recipients(to="undisclosed-recipients:;", bcc="a@x.test, b@x.test")
    assert plan.to == () and plan.cc == ()
    assert [r.kind for r in plan.envelope] == [RecipientKind.BCC, RecipientKind.BCC]


def test_plan_bcc_duplicate_of_to_is_sent_once_as_to() -> None:
    plan = plan_recipients(to="a@x.test", bcc="a@X.test")
    assert [(r.address.addr_spec, r.kind) for r in plan.envelope] == [
        ("a@x.test", RecipientKind.TO)]
    assert plan.bcc == ()


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"to": "a@x.test", "cc": ["ok@x.test", "x@"]}, "cc[1]"),
    ({"to": "a@x.test", "bcc": "b@x.test, b@"}, "bcc[1]"),
    ({"to": "a@x.test\r\nBcc: v@evil.test"}, "to[0]"),
    ({}, "to"),
    ({"to": "", "cc": [], "bcc": " ; "}, "to"),
])
def test_plan_refuses(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        plan_recipients(**kwargs)
    assert caught.value.field == field


def test_plan_smtputf8() -> None:
    with pytest.raises(InvalidAddress, match="SMTPUTF8"):
        plan_recipients(cc="jörg@x.test")
    plan = plan_recipients(cc="jörg@x.test", allow_smtputf8=True)
    assert plan.needs_smtputf8


# --- properties -------------------------------------------------------------------------------

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
atoms = st.text(alphabet=ATEXT, min_size=1, max_size=12)
ascii_locals = st.lists(atoms, min_size=1, max_size=4).map(".".join).filter(lambda s: len(s) <= 64)
utf8_locals = st.sampled_from(["jörg", "ñoño", "用户", "Δοκιμή", "a.ü"])
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda label: not re.match(r"..--", label))
idn_labels = st.sampled_from(["bücher", "münchen", "例え", "ñandú", "faß"])
tlds = st.sampled_from(["test", "example", "invalid", "localhost", "com", "org"])
ascii_domains = st.builds(lambda ls, tld: ".".join([*ls, tld]),
                          st.lists(labels, min_size=1, max_size=3), tlds)
idn_domains = st.builds(lambda label, tld: f"{label}.{tld}", idn_labels, tlds)
display_names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30
).map(str.strip)
ascii_addresses = st.builds(Address, display_names, ascii_locals, ascii_domains)
any_addresses = st.builds(Address, display_names, ascii_locals | utf8_locals,
                          ascii_domains | idn_domains)

NOISE = [*'abAB@.x"\\()<>,;: \t\r\n\x00', "ü", "\u2028", "例", "x.test", "<a@x.test>"]
noisy_text = st.lists(st.sampled_from(NOISE), max_size=40).map("".join) | st.text(max_size=60)


def _key(address: Address) -> tuple[str, tuple[str, str]]:
    return address.display_name, address.dedupe_key


def _assert_clean(address: Address) -> None:
    for part in (address.display_name, address.local, address.domain, address.ascii_domain,
                 address.formatted()):
        assert FORBIDDEN.isdisjoint(part), address


@given(st.lists(ascii_addresses, max_size=5))
@settings(deadline=None)
def test_format_then_parse_gives_the_same_addresses(addresses: list[Address]) -> None:
    assert parse_addresses(format_addresses(addresses), "to") == addresses


@given(st.lists(any_addresses, max_size=5))
@settings(deadline=None)
def test_format_then_parse_round_trips_idn_and_utf8(addresses: list[Address]) -> None:
    parsed = parse_addresses(format_addresses(addresses), "to", allow_smtputf8=True)
    assert [_key(a) for a in parsed] == [_key(a) for a in addresses]


@given(noisy_text)
@settings(deadline=None, max_examples=400)
def test_parse_never_yields_injection_nor_other_errors(text: str) -> None:
    try:
        addresses = parse_addresses(text, "to", allow_smtputf8=True)
    except InvalidAddress as error:
        assert error.field is not None and error.field.startswith("to[")
        return
    for address in addresses:
        _assert_clean(address)
    again = parse_addresses(format_addresses(addresses), "to", allow_smtputf8=True)
    assert [_key(a) for a in again] == [_key(a) for a in addresses]


@given(st.lists(noisy_text, max_size=4))
@settings(deadline=None)
def test_list_parse_never_raises_anything_else(texts: list[str]) -> None:
    try:
        for address in parse_addresses(texts, "cc"):
            _assert_clean(address)
    except InvalidAddress as error:
        assert error.field is not None and error.field.startswith("cc[")


@given(st.lists(ascii_addresses, max_size=4), st.lists(ascii_addresses, max_size=4),
       st.lists(ascii_addresses, min_size=1, max_size=4), st.booleans())
@settings(deadline=None)
def test_plan_envelope_is_the_deduplicated_union(
    to: list[Address], cc: list[Address], bcc: list[Address], shout: bool
) -> None:
    def text(addresses: list[Address]) -> str:
        formatted = format_addresses(addresses)
        return formatted.upper() if shout else formatted

    # upper-casing changes local parts too: compare against what was actually parsed
    parsed = [parse_addresses(text(x), "to") for x in (to, cc, bcc)]
    plan = plan_recipients(text(to), text(cc), text(bcc))
    keys = [r.address.dedupe_key for r in plan.envelope]
    assert len(keys) == len(set(keys))
    assert set(keys) == {a.dedupe_key for field in parsed for a in field}
    header_keys = {a.dedupe_key for a in plan.to + plan.cc}
    for recipient in plan.envelope:
        assert (recipient.address.dedupe_key in header_keys) == (
            recipient.kind is not RecipientKind.BCC)


# --- the bare addr-spec fast path gives what the tokenizer gives -----------------------

_PLAIN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~.-@"


def _outcomes(results: Any) -> list[Any]:
    return [(str(r), r.field, r.hint) if isinstance(r, InvalidAddress) else r for r in results]


@given(st.text(alphabet=_PLAIN_CHARS, min_size=1, max_size=40) | st.builds(
    "{}@{}".format, st.text(alphabet=_PLAIN_CHARS, min_size=0, max_size=20),
    st.text(alphabet=string.ascii_letters + string.digits + ".-", min_size=0, max_size=20)))
@settings(deadline=None, max_examples=500)
def test_a_bare_address_parses_as_the_tokenizer_parses_it(text: str) -> None:
    from outbox.core.addresses.parse import _parse_entries, _parse_text

    def label(index: int) -> str:
        return f"to[{index}]"

    for smtputf8 in (False, True):
        assert _outcomes(_parse_text(text, label, smtputf8)) == \
            _outcomes(_parse_entries(text, label, smtputf8)), text
    from outbox.core.addresses.parse import _split_entries, split_entries
    assert split_entries(text) == _split_entries(text), text


# --- the local part and the domain checked apart decide as the whole check ------------

def _verdict(check: Any, local: str, domain: str) -> Any:
    from outbox.core.addresses.validate import Problem
    try:
        return check(local, domain)
    except Problem as problem:
        return ("refused", problem.reason, problem.hint)


_local_parts = st.text(alphabet=string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~.-"
                       + "éü中\u0301 ", min_size=0, max_size=70)
_domains = st.text(alphabet=string.ascii_letters + string.digits + ".-_éü中", min_size=0,
                   max_size=70) | st.sampled_from(
    ["example.test", "Bücher.test", "a.invalid", "x.localhost", "-a.com", "a..b", "co",
     "xn--bcher-kva.test", "example.com.", "a" * 64 + ".com", ("b" * 60 + ".") * 4 + "com"])


@given(_local_parts | st.from_regex(r"[a-z0-9.+_-]{1,70}", fullmatch=True), _domains)
@settings(deadline=None, max_examples=1500)
def test_the_split_check_decides_as_the_whole_check(local: str, domain: str) -> None:
    from outbox.core.addresses.validate import _checked_whole, checked_ascii_domain
    assert _verdict(checked_ascii_domain, local, domain) == \
        _verdict(_checked_whole, local, domain), (local, domain)


def test_a_bare_address_parsed_again_comes_from_the_cache_and_a_refusal_is_not_kept() -> None:
    """`service.pacing` validates a long list in chunks; `plan_message` parses it again in
    one turn of the event loop and must find every address already parsed."""
    from outbox.core.addresses.parse import _plain_address

    values = [f"cache-{i}@example.test" for i in range(300)]
    assert address_errors(values, "to") == []
    before = _plain_address.cache_info().hits
    again = parse_addresses(values, "to")
    assert _plain_address.cache_info().hits - before == 300
    assert [a.addr_spec for a in again] == values
    for _ in range(2):  # refused both times, with its field: nothing wrong was kept
        errors = address_errors(["ok@example.test", "a..b@example.test"], "cc")
        assert [e.field for e in errors] == ["cc[1]"]
