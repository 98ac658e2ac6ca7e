"""Which catalogue entry a reply gets when its basic and enhanced codes disagree. A
tester saw Gmail's attachment block, `552 5.7.0 ... content presents a potential
security issue`, explained as "Storage limit exceeded ... send large files as a link":
552 was looked up before the enhanced code's subject (5.7: security or policy), though
RFC 3463's enhanced code is the more precise. Servers give 450-452 and 550-554 for
many reasons, so there the subject comes first; 421 (closing) and the AUTH codes keep
their own meaning."""

from __future__ import annotations

import pytest

from outbox.core.guidance import CATALOGUE, LOOSE_BASIC_CODES, describe, key_for_reply
from outbox.core.guidance_catalogue import BASIC_CODES, FALLBACKS
from outbox.core.replies import parse_reply

GMAIL_BLOCK = ("This message was blocked because its content presents a potential security "
               "issue. Please visit https://support.google.com/mail/?p=BlockedMessage")


@pytest.mark.parametrize(("code", "text", "key"), [
    (552, f"5.7.0 {GMAIL_BLOCK}", "smtp.5.7.x"),
    (552, "5.2.2 Mailbox full", "smtp.5.2.2"),
    (552, "5.3.4 Message too big for system", "smtp.5.3.4"),
    (552, "Requested mail action aborted: exceeded storage allocation", "smtp.552"),
    (552, "5.2.0 Over quota", "smtp.5.2.x"),
    (550, "5.7.606 Access denied, banned sending IP", "smtp.5.7.x"),
    (550, "5.1.1 No such user", "smtp.5.1.1"),
    (550, "Mailbox unavailable", "smtp.550"),
    (554, "5.6.0 Message content rejected", "smtp.5.6.x"),
    (451, "4.4.0 DNS lookup failed", "smtp.4.4.0"),
    (530, "5.7.0 Authentication required", "smtp.530"),
    (535, "5.7.3 Authentication unsuccessful", "smtp.535"),
    (421, "4.3.2 System not accepting network messages", "smtp.421"),
    (421, "4.7.0 Slow down", "smtp.4.7.0"),
])
def test_the_key_a_reply_gets(code: int, text: str, key: str) -> None:
    assert key_for_reply(parse_reply(code, text)) == key


def test_gmails_attachment_block_is_not_called_a_storage_limit() -> None:
    reply = parse_reply(552, f"5.7.0 {GMAIL_BLOCK}")
    words = describe(key_for_reply(reply), reply)
    assert words.kind == "policy"
    assert "Storage" not in words.title and "storage" not in words.explanation.split("said")[0]
    assert "potential security issue" in words.explanation  # the server's own words quoted


def test_a_530_with_5_7_0_still_asks_for_a_login() -> None:
    assert CATALOGUE[key_for_reply(parse_reply(530, "5.7.0 Authentication required"))].kind \
        == "auth"


SUBJECTS = sorted({key.split(".")[2] for key in FALLBACKS if key.startswith("smtp.5.")
                   and key.endswith(".x") and key not in ("smtp.5.x.x", "smtp.5.0.x")})


@pytest.mark.parametrize("code", sorted(c for c in LOOSE_BASIC_CODES if c >= 500))
@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_loosely_used_basic_code_gives_way_to_the_enhanced_subject(code: int,
                                                                     subject: str) -> None:
    """An enhanced code with no entry of its own (detail 99), over the whole table."""
    assert key_for_reply(parse_reply(code, f"5.{subject}.99 x")) == f"smtp.5.{subject}.x"


@pytest.mark.parametrize("code", sorted(int(k[5:]) for k in BASIC_CODES
                                        if int(k[5:]) not in LOOSE_BASIC_CODES))
def test_a_basic_code_with_its_own_meaning_comes_before_the_subject(code: int) -> None:
    klass = str(code)[0]
    assert key_for_reply(parse_reply(code, f"{klass}.7.99 x")) == f"smtp.{code}"


def test_an_undefined_subject_says_no_more_than_the_basic_code() -> None:
    assert key_for_reply(parse_reply(554, "5.0.0 No such account")) == "smtp.554"
