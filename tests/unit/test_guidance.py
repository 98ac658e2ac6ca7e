"""The guidance catalogue: every entry, every lookup path, every fallback."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core import guidance
from outbox.core.classify import classify
from outbox.core.guidance import CATALOGUE, Guidance, all_keys, describe, key_for_reply
from outbox.core.guidance_catalogue import KINDS
from outbox.core.model import OutcomeKind, Reply
from outbox.core.replies import ReplyClass, classify_reply, parse_reply
from outbox.core.report import Condition, DeliveryReport, SessionFailure, Stage

ISSUE_BASIC_CODES = [421, 450, 451, 452, 454, 500, 501, 502, 503, 504, 530, 534, 535,
                     550, 551, 552, 553, 554]
OTHER_BASIC_CODES = [432, 455, 521, 538, 555, 556]

# (code, reply text, expected key, expected kind)
ENHANCED = [
    (550, "5.1.1 <bob@example.com>: User unknown", "smtp.5.1.1", "recipient"),
    (550, "5.1.2 Host or domain name not found", "smtp.5.1.2", "recipient"),
    (553, "5.1.3 Bad recipient address syntax", "smtp.5.1.3", "recipient"),
    (550, "5.1.6 Mailbox has moved", "smtp.5.1.6", "recipient"),
    (553, "5.1.7 Bad sender address syntax", "smtp.5.1.7", "message"),
    (450, "4.1.8 Sender address rejected: Domain not found", "smtp.4.1.8", "message"),
    (550, "5.1.8 Sender domain not found", "smtp.5.1.8", "message"),
    (556, "5.1.10 Recipient address has null MX", "smtp.5.1.10", "recipient"),
    (550, "5.2.1 Mailbox disabled", "smtp.5.2.1", "mailbox"),
    (552, "5.2.2 Mailbox full", "smtp.5.2.2", "mailbox"),
    (452, "4.2.2 Mailbox full", "smtp.4.2.2", "mailbox"),
    (552, "5.2.3 Message length exceeds administrative limit", "smtp.5.2.3", "message"),
    (552, "5.3.4 Message size exceeds fixed limit", "smtp.5.3.4", "message"),
    (451, "4.4.0 Routing problem", "smtp.4.4.0", "network"),
    (421, "4.4.1 No answer from host", "smtp.4.4.1", "network"),
    (421, "4.4.2 Connection dropped", "smtp.4.4.2", "network"),
    (451, "4.4.3 Name service error", "smtp.4.4.3", "network"),
    (421, "4.4.5 System congested", "smtp.4.4.5", "throttle"),
    (550, "5.4.4 Unable to route", "smtp.5.4.4", "recipient"),
    (554, "5.4.6 Mail loop", "smtp.5.4.6", "relay"),
    (452, "4.5.3 Too many recipients", "smtp.4.5.3", "message"),
    (552, "5.5.3 Too many recipients", "smtp.5.5.3", "message"),
    (554, "5.6.1 Media not supported", "smtp.5.6.1", "message"),
    (553, "5.6.7 Non-ASCII address not permitted", "smtp.5.6.7", "message"),
    (554, "5.7.1 Relay access denied", "smtp.5.7.1", "policy"),
    (550, "5.7.1 Message rejected by policy", "smtp.5.7.1", "policy"),
    (535, "5.7.8 Authentication credentials invalid", "smtp.5.7.8", "auth"),
    (534, "5.7.9 Application-specific password required", "smtp.5.7.9", "auth"),
    (538, "5.7.11 Encryption required", "smtp.5.7.11", "auth"),
    (534, "5.7.14 Please log in via your web browser", "smtp.5.7.14", "auth"),
    (535, "5.7.139 SmtpClientAuthentication is disabled", "smtp.5.7.139", "auth"),
    (550, "5.7.23 SPF validation failed", "smtp.5.7.23", "policy"),
    (550, "5.7.25 No PTR record", "smtp.5.7.25", "policy"),
    (550, "5.7.26 Unauthenticated email", "smtp.5.7.26", "policy"),
    (450, "4.7.0 Greylisted, try again later", "smtp.4.7.0", "throttle"),
    (421, "4.7.0 Too many connections, slow down", "smtp.4.7.0", "throttle"),
    (450, "4.7.1 Recipient address rejected: Greylisted", "smtp.4.7.1", "throttle"),
    (432, "4.7.12 A password transition is needed", "smtp.4.7.12", "auth"),
]

# Replies to AUTH: (code, text, expected key)
DURING_AUTH = [
    (535, "5.7.8 Authentication credentials invalid", "smtp.5.7.8"),
    (535, "Authentication failed", "smtp.535"),
    (535, "5.7.3 Authentication unsuccessful", "smtp.535"),
    (534, "5.7.9 Application-specific password required", "smtp.5.7.9"),
    (534, "5.7.14 Please log in via your web browser", "smtp.5.7.14"),
    (535, "5.7.139 SmtpClientAuthentication is disabled", "smtp.5.7.139"),
    (538, "5.7.11 Encryption required", "smtp.5.7.11"),
    (530, "5.7.0 Authentication required", "smtp.530"),
    (550, "5.7.1 Not allowed", "auth.rejected"),
    (501, "5.5.2 Cannot decode response", "auth.rejected"),
    (554, "Go away", "auth.rejected"),
    (599, "5.9.9 weird", "auth.rejected"),
    (454, "4.7.0 Temporary authentication failure", "smtp.454"),
    (432, "4.7.12 A password transition is needed", "smtp.4.7.12"),
    (421, "4.7.0 Try again later", "smtp.4.7.0"),
    (235, "2.7.0 Authentication successful", "smtp.2xx"),
]

# Replies with no specific entry: (code, text, expected fallback key)
FALLBACK = [
    (559, "5.1.9 odd address", "smtp.5.1.x"),
    (558, "5.2.9 odd mailbox", "smtp.5.2.x"),
    (558, "5.3.9 odd system", "smtp.5.3.x"),
    (558, "5.4.9 odd route", "smtp.5.4.x"),
    (558, "5.5.9 odd protocol", "smtp.5.5.x"),
    (558, "5.6.9 odd content", "smtp.5.6.x"),
    (571, "5.7.99 blocked", "smtp.5.7.x"),
    (571, "5.7.0 blocked", "smtp.5.7.x"),
    (558, "5.0.0 nope", "smtp.5.0.x"),
    (441, "4.1.9 odd address", "smtp.4.1.x"),
    (442, "4.2.9 odd mailbox", "smtp.4.2.x"),
    (443, "4.3.9 odd system", "smtp.4.3.x"),
    (441, "4.4.9 odd route", "smtp.4.4.x"),
    (445, "4.5.9 odd protocol", "smtp.4.5.x"),
    (446, "4.6.9 odd content", "smtp.4.6.x"),
    (471, "4.7.99 slow down", "smtp.4.7.x"),
    (440, "4.0.0 later", "smtp.4.0.x"),
    (559, "5.9.9 weird", "smtp.5.x.x"),
    (471, "4.9.1 weird", "smtp.4.x.x"),
    (599, "weird", "smtp.5xx"),
    (499, "later", "smtp.4xx"),
    (250, "2.0.0 Ok: queued as 4F2", "smtp.2xx"),
    (251, "User not local; will forward", "smtp.2xx"),
    (334, "VXNlcm5hbWU6", "smtp.3xx"),
    (999, "what", "smtp.unknown"),
    (600, "what", "smtp.unknown"),
    (0, "", "smtp.unknown"),
    (-1, "Server disconnected", "smtp.unknown"),
]

OUTBOX_KEYS = ["uncertain_delivery", "relay_needs_attention", "held_by_policy",
               "internal_route_violation", "attachment_blocked", "attachment_corrupt",
               "clock_skew", "max_attempts_reached", "max_age_reached", "cancelled",
               "relay_failure_rate", "queue_backlog", "messages_held"]

TLS_CERTIFICATE_CONDITIONS = [Condition.TLS_CERT_EXPIRED, Condition.TLS_HOSTNAME_MISMATCH,
                              Condition.TLS_SELF_SIGNED, Condition.TLS_UNKNOWN_CA]

_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")


def _reply_class_digit(key: str) -> str | None:
    """'5' for smtp.550, smtp.5.1.1, smtp.5.1.x, smtp.5xx; None otherwise."""
    match = re.fullmatch(r"smtp\.([2-5])(?:\d\d|xx|\.\d+\.(?:\d+|x)|\.x\.x)", key)
    return match.group(1) if match else None


# --- every entry ----------------------------------------------------------------


@pytest.mark.parametrize("key", all_keys())
def test_every_entry_is_complete_plain_text(key: str) -> None:
    entry = describe(key)
    assert entry is CATALOGUE[key]
    assert entry.key == key
    assert entry.kind in KINDS
    assert entry.title and not entry.title.endswith(".") and len(entry.title) <= 60
    assert entry.explanation.endswith(".")
    assert 1 <= len(_SENTENCE_END.findall(entry.explanation)) <= 2
    assert entry.next_step.endswith(".")
    assert len(entry.one_line().splitlines()) == 1


@pytest.mark.parametrize("key", all_keys())
def test_every_entry_quotes_the_reply_it_is_given(key: str) -> None:
    reply = parse_reply(550, "5.9.9 first line\r\nsecond line")
    entry = describe(key, reply)
    assert entry.explanation.startswith(CATALOGUE[key].explanation)
    assert entry.explanation.endswith('The server said: "550 5.9.9 first line second line".')
    assert len(entry.one_line().splitlines()) == 1
    assert (entry.kind, entry.title, entry.retryable) == (
        CATALOGUE[key].kind, CATALOGUE[key].title, CATALOGUE[key].retryable)


def test_what_the_relay_offers_is_read_in_its_transcript_not_in_doctor() -> None:
    """doctor shows these next steps too, where "run `outbox doctor`" went round in a
    circle (a stranger pass); `relay test --transcript` prints the EHLO answer."""
    offers = [key for key in all_keys() if "what the relay offers" in describe(key).next_step]
    assert len(offers) >= 4, offers
    for key in offers:
        assert "`outbox relay test NAME --transcript`" in describe(key).next_step, key
        assert "outbox doctor" not in describe(key).next_step, key


def test_catalogue_is_large_and_read_only() -> None:
    assert len(all_keys()) == len(set(all_keys())) >= 100
    with pytest.raises(TypeError):
        CATALOGUE["smtp.550"] = CATALOGUE["smtp.554"]


@pytest.mark.parametrize("key", [k for k in all_keys() if k.startswith(("smtp.", "auth."))])
def test_reply_entries_are_retryable_exactly_for_4xx(key: str) -> None:
    assert CATALOGUE[key].retryable is (_reply_class_digit(key) == "4")


@pytest.mark.parametrize("key", [k for k in all_keys() if CATALOGUE[k].kind == "auth"])
def test_auth_entries_are_never_5xx_retryable(key: str) -> None:
    assert CATALOGUE[key].retryable is (_reply_class_digit(key) == "4")


# --- reply codes ------------------------------------------------------------------


@pytest.mark.parametrize("code", ISSUE_BASIC_CODES + OTHER_BASIC_CODES)
def test_basic_code_has_its_own_entry(code: int) -> None:
    reply = parse_reply(code, "Something happened")
    key = key_for_reply(reply)
    assert key == f"smtp.{code}"
    assert describe(key).retryable is reply.is_transient


@pytest.mark.parametrize(("code", "text", "key", "kind"), ENHANCED)
def test_enhanced_code_has_its_own_entry(code: int, text: str, key: str, kind: str) -> None:
    reply = parse_reply(code, text)
    assert key_for_reply(reply) == key
    entry = describe(key, reply)
    assert entry.kind == kind
    assert entry.retryable is reply.is_transient
    assert f'"{reply}"' in entry.explanation


@pytest.mark.parametrize(("code", "text", "key"), DURING_AUTH)
def test_reply_to_auth_names_an_auth_entry(code: int, text: str, key: str) -> None:
    reply = parse_reply(code, text)
    assert key_for_reply(reply, during_auth=True) == key
    if reply.is_permanent:
        assert describe(key).kind == "auth"
        assert describe(key).retryable is False


def test_auth_rejected_only_during_auth() -> None:
    reply = parse_reply(550, "5.7.1 Not allowed")
    assert key_for_reply(reply) == "smtp.5.7.1"
    assert key_for_reply(reply, during_auth=True) == "auth.rejected"


@pytest.mark.parametrize(("code", "text", "key"), FALLBACK)
def test_fallback_by_subject_class_and_code_quotes_raw_text(code: int, text: str,
                                                             key: str) -> None:
    reply = parse_reply(code, text)
    assert key_for_reply(reply) == key
    entry = describe(key, reply)
    assert f'The server said: "{reply}".' in entry.explanation
    assert entry.retryable is reply.is_transient


@pytest.mark.parametrize("code_class", ["4", "5"])
@pytest.mark.parametrize("subject", range(8))
def test_every_enhanced_subject_has_a_fallback(code_class: str, subject: int) -> None:
    key = f"smtp.{code_class}.{subject}.x"
    assert key in CATALOGUE
    assert CATALOGUE[key].retryable is (code_class == "4")


@pytest.mark.parametrize(("reply", "key"), [
    (Reply(550, "4.7.0", "class disagrees with the code"), "smtp.550"),
    (Reply(559, "5.x", "malformed"), "smtp.5xx"),
    (Reply(559, "", "empty"), "smtp.5xx"),
    (Reply(550, "5.01.001", "leading zeros"), "smtp.5.1.1"),
    (Reply(550, "5.1.1 ", "trailing space"), "smtp.550"),
    (Reply(550, "5.\u0661.\u0661", "non-ASCII digits"), "smtp.550"),
])
def test_odd_enhanced_codes_built_by_hand(reply: Reply, key: str) -> None:
    assert key_for_reply(reply) == key


# --- conditions ---------------------------------------------------------------------


@pytest.mark.parametrize("condition", list(Condition))
def test_every_condition_has_an_entry(condition: Condition) -> None:
    assert condition.value in CATALOGUE
    assert describe(condition.value).kind not in {"unknown", "sent"}


@pytest.mark.parametrize("condition", list(Condition))
def test_condition_retryable_matches_what_classify_does(condition: Condition) -> None:
    report = DeliveryReport(relay="r", recipients=("a@example.com",),
                            failure=SessionFailure(Stage.CONNECT, condition=condition))
    outcome = classify(report)["a@example.com"]
    assert outcome.guidance == condition.value
    expected = outcome.kind in {OutcomeKind.DEFERRED, OutcomeKind.UNCERTAIN}
    assert describe(outcome.guidance).retryable is expected


def test_tls_certificate_errors_are_each_named() -> None:
    entries = [describe(c.value) for c in TLS_CERTIFICATE_CONDITIONS]
    assert {e.kind for e in entries} == {"tls"}
    assert len({e.title for e in entries}) == len(entries)
    assert len({e.next_step for e in entries}) == len(entries)


@pytest.mark.parametrize("key", OUTBOX_KEYS)
def test_outbox_condition_has_an_entry(key: str) -> None:
    assert key in CATALOGUE
    assert describe(key).kind != "unknown"


def test_uncertain_delivery_key_from_classify_has_an_entry() -> None:
    report = DeliveryReport(relay="r", recipients=("a@example.com",), data_sent=True,
                            failure=SessionFailure(Stage.AFTER_DATA, detail="reset"))
    outcome = classify(report)["a@example.com"]
    assert outcome.kind is OutcomeKind.UNCERTAIN
    assert describe(outcome.guidance).key == guidance.UNCERTAIN_DELIVERY


def test_held_auth_failure_from_classify_is_not_retryable() -> None:
    reply = parse_reply(535, "5.7.8 Authentication credentials invalid")
    report = DeliveryReport(relay="r", recipients=("a@example.com",),
                            failure=SessionFailure(Stage.AUTH, reply=reply))
    outcome = classify(report)["a@example.com"]
    assert outcome.kind is OutcomeKind.HELD
    assert describe(outcome.guidance, reply).retryable is False


# --- unknown keys ------------------------------------------------------------------


def test_unknown_key_gets_a_generic_entry_quoting_the_reply() -> None:
    reply = parse_reply(550, "5.9.9 weird")
    entry = describe("smtp.5.9.9", reply)
    assert entry.key == "smtp.5.9.9"
    assert entry.kind == "unknown"
    assert 'The server said: "550 5.9.9 weird"' in entry.explanation
    assert entry.retryable is False


@pytest.mark.parametrize(("reply", "retryable"), [
    (None, False), (parse_reply(451, "later"), True), (parse_reply(554, "no"), False)])
def test_unknown_key_is_retryable_only_for_a_transient_reply(reply: Reply | None,
                                                             retryable: bool) -> None:
    assert describe("no.such.key", reply).retryable is retryable


def test_long_reply_is_cut_and_kept_on_one_line() -> None:
    reply = parse_reply(554, "5.7.1 " + "spam\n" * 500)
    entry = describe(key_for_reply(reply), reply)
    assert len(entry.explanation) < len(CATALOGUE["smtp.5.7.1"].explanation) + 330
    assert entry.explanation.endswith('…".')
    assert len(entry.one_line().splitlines()) == 1


# --- properties --------------------------------------------------------------------

codes = st.one_of(st.sampled_from(ISSUE_BASIC_CODES + OTHER_BASIC_CODES),
                  st.integers(min_value=200, max_value=599), st.integers())
enhanced_prefixes = st.builds(
    "{}.{}.{} ".format, st.sampled_from("245"), st.integers(0, 999), st.integers(0, 999))
reply_texts = st.one_of(st.text(), st.builds(str.__add__, enhanced_prefixes, st.text()))
replies = st.builds(parse_reply, codes, reply_texts)
hand_made_replies = st.builds(Reply, codes, st.none() | st.text(), st.text())


@given(st.text(), st.none() | replies | hand_made_replies)
def test_describe_never_raises_and_stays_on_one_line(key: str, reply: Reply | None) -> None:
    entry = describe(key, reply)
    assert isinstance(entry, Guidance)
    assert entry.key == key
    assert len(entry.one_line().splitlines()) == 1


@given(replies | hand_made_replies, st.booleans())
def test_every_reply_gets_a_catalogue_key(reply: Reply, during_auth: bool) -> None:
    key = key_for_reply(reply, during_auth=during_auth)
    assert key in CATALOGUE
    assert describe(key, reply).retryable is reply.is_transient


@given(replies, st.booleans())
def test_guidance_agrees_with_reply_classification(reply: Reply, during_auth: bool) -> None:
    key = key_for_reply(reply, during_auth=during_auth)
    reply_class = classify_reply(reply, during_auth=during_auth)
    if during_auth and reply.is_permanent:
        assert CATALOGUE[key].kind == "auth"
    if reply_class is ReplyClass.SUCCESS:
        assert CATALOGUE[key].kind in {"sent", "unknown"}
    if reply_class in {ReplyClass.TRANSIENT, ReplyClass.THROTTLED}:
        assert CATALOGUE[key].retryable


@given(st.sampled_from(all_keys()), replies)
def test_catalogue_entries_quote_any_reply(key: str, reply: Reply) -> None:
    flat = " ".join(str(reply).split())
    explanation = describe(key, reply).explanation
    assert explanation.startswith(CATALOGUE[key].explanation + ' The server said: "')
    assert flat[:200] in explanation


def test_a_530_and_the_alert_it_raises_name_the_same_fix() -> None:
    """A relay that refuses mail with 530 and no login set: the message's guidance
    (smtp.530) and the relay's alert (login_required) both say `relay set-credentials`,
    where the message's once said only to edit the config (found by a stranger pass)."""
    step = "`outbox relay set-credentials NAME` (that releases the held mail)"
    assert step in describe("smtp.530").next_step
    assert "`outbox relay set-credentials NAME` (that releases" in describe(
        guidance.LOGIN_REQUIRED).next_step
