"""Reply parsing and the reply classes: enhanced codes, throttling, auth problems."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.model import Reply
from outbox.core.replies import (
    ReplyClass,
    ReplyCode,
    classify_reply,
    is_auth_problem,
    is_throttling,
    parse_reply,
)

# (code, text as received, expected enhanced code, expected remaining text)
PARSED = [
    (250, "2.0.0 OK: queued as 12345", "2.0.0", "OK: queued as 12345"),
    (550, "5.1.1 <bob@example.com>: Recipient address rejected", "5.1.1",
     "<bob@example.com>: Recipient address rejected"),
    (451, "4.3.0 Temporary failure", "4.3.0", "Temporary failure"),
    (421, "4.7.0", "4.7.0", ""),
    (535, "5.7.8 Authentication credentials invalid", "5.7.8",
     "Authentication credentials invalid"),
    (550, "5.1.10 Null MX", "5.1.10", "Null MX"),
    (554, "5.7.139 Authentication unsuccessful", "5.7.139", "Authentication unsuccessful"),
    (550, "  5.1.1   User unknown  ", "5.1.1", "User unknown"),
    (550, "5.1.1\tUser unknown", "5.1.1", "User unknown"),
    # no enhanced code at all
    (550, "User unknown", None, "User unknown"),
    (250, "OK", None, "OK"),
    (250, "", None, ""),
    # RFC 3463: the class must agree with the basic code, else it is ordinary text
    (250, "5.0.0 odd but accepted", None, "5.0.0 odd but accepted"),
    (550, "4.2.2 Mailbox full", None, "4.2.2 Mailbox full"),
    (451, "5.3.0 mismatch", None, "5.3.0 mismatch"),
    # not a code: too many digits, glued to the text, or not at the start
    (550, "5.1.1234 too long", None, "5.1.1234 too long"),
    (550, "5.1.1,User unknown", None, "5.1.1,User unknown"),
    (550, "5.1 User unknown", None, "5.1 User unknown"),
    (550, "User 5.1.1 unknown", None, "User 5.1.1 unknown"),
    (550, "3.1.1 wrong class", None, "3.1.1 wrong class"),
]


@pytest.mark.parametrize(("code", "text", "enhanced", "rest"), PARSED)
def test_parse_reply_splits_enhanced_code(code, text, enhanced, rest):
    assert parse_reply(code, text) == Reply(code, enhanced, rest)


def test_parse_reply_accepts_none_text():
    assert parse_reply(250, None) == Reply(250, None, "")  # type: ignore[arg-type]


@pytest.mark.parametrize(("reply", "expected"), [
    (Reply(421, None, "closing"), True),
    (Reply(421, "4.3.2", "shutting down"), True),
    (Reply(451, "4.7.1", "Please try again later"), True),
    (Reply(450, "4.7.0", "rate limited"), True),
    (Reply(452, "4.7.12", "slow down"), True),
    (Reply(451, "4.3.0", "local error"), False),
    (Reply(452, "4.2.2", "mailbox full"), False),
    (Reply(450, None, "busy"), False),
    (Reply(550, "5.7.1", "relaying denied"), False),
    (Reply(554, "4.7.0", "class mismatch never parsed, but guard anyway"), False),
    (Reply(250, None, "OK"), False),
])
def test_is_throttling(reply, expected):
    assert is_throttling(reply) is expected


@pytest.mark.parametrize(("reply", "expected"), [
    (Reply(535, "5.7.8", "Authentication credentials invalid"), True),
    (Reply(535, None, "bad login"), True),
    (Reply(530, "5.7.0", "Authentication required"), True),
    (Reply(534, "5.7.9", "Authentication mechanism is too weak"), True),
    (Reply(538, "5.7.11", "Encryption required"), True),
    (Reply(550, "5.7.8", "not authenticated"), True),
    (Reply(554, "5.7.139", "Authentication unsuccessful"), True),
    (Reply(550, "5.7.14", "trust relationship required"), True),
    # 5.7.0 outside AUTH is as often content as credentials
    (Reply(554, "5.7.0", "message refused"), False),
    (Reply(550, "5.7.1", "relaying denied"), False),
    (Reply(454, "4.7.0", "temporary authentication failure"), False),
    (Reply(550, "5.1.1", "user unknown"), False),
    (Reply(235, "2.7.0", "Authentication successful"), False),
])
def test_is_auth_problem(reply, expected):
    assert is_auth_problem(reply) is expected


# (reply, during_auth, expected class)
CLASSES = [
    (Reply(250, "2.0.0", "OK"), False, ReplyClass.SUCCESS),
    (Reply(235, "2.7.0", "Authentication successful"), True, ReplyClass.SUCCESS),
    (Reply(354, None, "End data with <CR><LF>.<CR><LF>"), False, ReplyClass.SUCCESS),
    (Reply(251, None, "will forward"), False, ReplyClass.SUCCESS),
    (Reply(535, "5.7.8", "bad credentials"), True, ReplyClass.AUTH),
    (Reply(535, "5.7.8", "bad credentials"), False, ReplyClass.AUTH),
    (Reply(530, "5.7.0", "Authentication required"), False, ReplyClass.AUTH),
    (Reply(550, "5.7.8", "not authenticated"), False, ReplyClass.AUTH),
    (Reply(504, "5.5.4", "unrecognized authentication type"), True, ReplyClass.AUTH),
    (Reply(500, None, "syntax error"), True, ReplyClass.AUTH),
    (Reply(504, "5.5.4", "parameter not implemented"), False, ReplyClass.PERMANENT),
    (Reply(454, "4.7.0", "temporary authentication failure"), True, ReplyClass.THROTTLED),
    (Reply(454, None, "temporary authentication failure"), True, ReplyClass.TRANSIENT),
    (Reply(421, "4.7.0", "too many connections"), False, ReplyClass.THROTTLED),
    (Reply(421, None, "closing"), True, ReplyClass.THROTTLED),
    (Reply(451, "4.7.1", "greylisted"), False, ReplyClass.THROTTLED),
    (Reply(451, "4.3.0", "local error"), False, ReplyClass.TRANSIENT),
    (Reply(452, "4.2.2", "mailbox full"), False, ReplyClass.TRANSIENT),
    (Reply(450, None, "mailbox busy"), False, ReplyClass.TRANSIENT),
    (Reply(550, "5.1.1", "user unknown"), False, ReplyClass.PERMANENT),
    (Reply(552, "5.3.4", "message too big"), False, ReplyClass.PERMANENT),
    (Reply(554, "5.7.1", "spam"), False, ReplyClass.PERMANENT),
    (Reply(554, "5.7.0", "refused"), False, ReplyClass.PERMANENT),
]


@pytest.mark.parametrize(("reply", "during_auth", "expected"), CLASSES)
def test_classify_reply(reply, during_auth, expected):
    assert classify_reply(reply, during_auth=during_auth) is expected


def test_reply_codes_have_names():
    assert ReplyCode.MAILBOX_UNAVAILABLE == 550
    assert ReplyCode.SERVICE_NOT_AVAILABLE == 421
    assert ReplyCode.AUTH_CREDENTIALS_INVALID == 535
    assert ReplyCode.TEMPORARY_AUTH_FAILURE == 454


# --- properties ------------------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(codec="ascii", categories=("L", "N", "P", "Zs")),
                max_size=40)
_ENHANCED = st.builds(lambda c, s, d: f"{c}.{s}.{d}", st.sampled_from("245"),
                      st.integers(0, 999), st.integers(0, 999))


def _text_with_code(code: int):
    """Reply text that may start with an enhanced code of any class."""
    return st.one_of(_TEXT, st.builds(lambda e, t: f"{e} {t}", _ENHANCED, _TEXT))


@given(st.integers(200, 599).flatmap(lambda c: st.tuples(st.just(c), _text_with_code(c))))
def test_parsed_enhanced_code_always_agrees_with_the_basic_class(args):
    code, text = args
    reply = parse_reply(code, text)
    if reply.enhanced is not None:
        assert reply.enhanced[0] == str(code)[0]
        assert text.strip().startswith(reply.enhanced)
    assert reply.text == reply.text.strip()


@given(st.integers(200, 599).flatmap(lambda c: st.tuples(st.just(c), _text_with_code(c))))
def test_str_of_a_parsed_reply_parses_back_to_the_same_reply(args):
    code, text = args
    reply = parse_reply(code, text)
    _, _, rest = str(reply).partition(" ")
    assert parse_reply(code, rest) == reply


@given(st.integers(500, 599), _TEXT, st.one_of(st.none(), _ENHANCED), st.booleans())
def test_a_5xx_is_never_transient(code, text, enhanced, during_auth):
    reply = Reply(code, enhanced if enhanced and enhanced[0] == "5" else None, text)
    assert classify_reply(reply, during_auth=during_auth) in (ReplyClass.PERMANENT,
                                                              ReplyClass.AUTH)
    if during_auth:
        assert classify_reply(reply, during_auth=True) is ReplyClass.AUTH


@given(st.integers(400, 499), _TEXT, st.one_of(st.none(), _ENHANCED), st.booleans())
def test_a_4xx_is_never_permanent(code, text, enhanced, during_auth):
    reply = Reply(code, enhanced if enhanced and enhanced[0] == "4" else None, text)
    assert classify_reply(reply, during_auth=during_auth) in (ReplyClass.TRANSIENT,
                                                              ReplyClass.THROTTLED)


@given(st.integers(200, 399), _TEXT, st.booleans())
def test_2xx_and_3xx_are_success(code, text, during_auth):
    assert classify_reply(Reply(code, None, text), during_auth=during_auth) is ReplyClass.SUCCESS
