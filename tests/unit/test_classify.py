"""classify: a DeliveryReport becomes one Outcome per recipient, by scope and permanence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.classify import classify
from outbox.core.guidance import CATALOGUE, key_for_reply
from outbox.core.model import Outcome, OutcomeKind, Reply, Scope
from outbox.core.report import Condition, DeliveryReport, SessionFailure, Stage

A, B = "a@example.com", "b@example.org"
OK = Reply(250, "2.0.0", "OK")
OK_DATA = Reply(250, "2.0.0", "Ok: queued as 4F2A1")


def report(*, recipients=(A, B), mail=OK, rcpt=None, data=None, failure=None,
           data_sent=False) -> DeliveryReport:
    """A report of a session that got as far as the arguments say."""
    if rcpt is None and failure is None and mail is not None and mail.is_success:
        rcpt = dict.fromkeys(recipients, OK)
    return DeliveryReport(relay="default", recipients=tuple(recipients), mail_reply=mail,
                          rcpt_replies=dict(rcpt or {}), data_reply=data, failure=failure,
                          data_sent=data_sent)


def failed_at(stage: Stage, reply: Reply | None = None, condition: Condition | None = None,
              **kwargs) -> DeliveryReport:
    """The session ended at `stage`: nothing after it was said."""
    failure = SessionFailure(stage, reply=reply, condition=condition, detail="boom")
    early = stage in (Stage.CONNECT, Stage.GREETING, Stage.EHLO, Stage.STARTTLS, Stage.AUTH,
                      Stage.SIZE_CHECK, Stage.MAIL)
    return report(mail=None if early else OK, failure=failure, **kwargs)


def kinds(outcomes: dict[str, Outcome]) -> dict[str, OutcomeKind]:
    return {rcpt: o.kind for rcpt, o in outcomes.items()}


def only(outcomes: dict[str, Outcome]) -> Outcome:
    """Every recipient got the same outcome; return it."""
    values = set(outcomes.values())
    assert len(values) == 1, outcomes
    return values.pop()


# --- before MAIL FROM: the relay's problem ---------------------------------------------------

RELAY_CONDITIONS = [
    (Stage.CONNECT, Condition.CONNECTION_REFUSED),
    (Stage.CONNECT, Condition.CONNECTION_TIMEOUT),
    (Stage.CONNECT, Condition.DNS_FAILURE),
    (Stage.CONNECT, Condition.NETWORK_UNREACHABLE),
    (Stage.GREETING, Condition.COMMAND_TIMEOUT),
    (Stage.GREETING, Condition.CONNECTION_DROPPED),
    (Stage.EHLO, Condition.COMMAND_TIMEOUT),
    (Stage.EHLO, Condition.PROTOCOL_ERROR),
    (Stage.STARTTLS, Condition.STARTTLS_NOT_OFFERED),
    (Stage.STARTTLS, Condition.TLS_CERT_EXPIRED),
    (Stage.STARTTLS, Condition.TLS_HOSTNAME_MISMATCH),
    (Stage.STARTTLS, Condition.TLS_SELF_SIGNED),
    (Stage.STARTTLS, Condition.TLS_UNKNOWN_CA),
    (Stage.STARTTLS, Condition.TLS_HANDSHAKE_FAILED),
    (Stage.CONNECT, Condition.TLS_VERSION_MISMATCH),
    (Stage.AUTH, Condition.CONNECTION_DROPPED),
]


@pytest.mark.parametrize(("stage", "condition"), RELAY_CONDITIONS)
def test_session_failures_before_mail_defer_every_recipient_at_relay_scope(stage, condition):
    outcome = only(classify(failed_at(stage, condition=condition)))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.scope is Scope.RELAY
    assert outcome.guidance == condition.value
    assert outcome.guidance in CATALOGUE
    assert outcome.detail == "boom"
    assert outcome.reply is None


@pytest.mark.parametrize("stage", [Stage.GREETING, Stage.EHLO, Stage.STARTTLS, Stage.AUTH])
def test_failure_without_condition_or_reply_is_a_protocol_error(stage):
    outcome = only(classify(failed_at(stage)))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.guidance == Condition.PROTOCOL_ERROR.value


@pytest.mark.parametrize(("stage", "reply"), [
    (Stage.GREETING, Reply(421, "4.3.2", "Service not available")),
    (Stage.GREETING, Reply(450, None, "try later")),
    (Stage.EHLO, Reply(421, None, "too many connections from your IP")),
    (Stage.EHLO, Reply(451, "4.3.0", "local error")),
    (Stage.STARTTLS, Reply(454, "4.7.0", "TLS not available due to temporary reason")),
    (Stage.AUTH, Reply(454, "4.7.0", "Temporary authentication failure")),
    (Stage.AUTH, Reply(454, None, "Temporary authentication failure")),
    (Stage.AUTH, Reply(421, None, "closing")),
])
def test_4xx_before_mail_is_a_relay_scope_deferral(stage, reply):
    outcome = only(classify(failed_at(stage, reply)))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.scope is Scope.RELAY
    assert outcome.reply == reply


@pytest.mark.parametrize(("stage", "reply"), [
    (Stage.GREETING, Reply(554, "5.7.1", "No SMTP service here")),
    (Stage.EHLO, Reply(550, None, "access denied")),
    (Stage.STARTTLS, Reply(554, "5.7.3", "TLS negotiation refused")),
])
def test_5xx_before_mail_holds_the_relays_mail_never_fails_it(stage, reply):
    """A relay that refuses us is the relay's problem (STYLE 2): an operator must act,
    and no message fails because of it."""
    outcome = only(classify(failed_at(stage, reply)))
    assert outcome.kind is OutcomeKind.HELD
    assert outcome.scope is Scope.RELAY
    assert outcome.reply == reply
    assert outcome.guidance == key_for_reply(reply)


# --- AUTH ------------------------------------------------------------------------------------

@pytest.mark.parametrize("reply", [
    Reply(535, "5.7.8", "Authentication credentials invalid"),
    Reply(535, None, "5.7.3 Authentication unsuccessful"),
    Reply(530, "5.7.0", "Authentication required"),
    Reply(534, "5.7.9", "Please log in with your web browser"),
    Reply(534, "5.7.14", "Application-specific password required"),
    Reply(538, "5.7.11", "Encryption required for requested authentication mechanism"),
    Reply(504, "5.5.4", "Unrecognized authentication type"),
    Reply(554, "5.7.0", "Too many failed logins"),
])
def test_auth_rejection_holds_never_fails(reply):
    outcome = only(classify(failed_at(Stage.AUTH, reply)))
    assert outcome.kind is OutcomeKind.HELD
    assert outcome.scope is Scope.RELAY
    assert outcome.reply == reply
    assert outcome.guidance == key_for_reply(reply, during_auth=True)
    assert outcome.guidance in CATALOGUE


@pytest.mark.parametrize("condition", [
    Condition.AUTH_NOT_OFFERED, Condition.AUTH_NEEDS_TLS, Condition.TOKEN_REFRESH_FAILED,
])
def test_auth_conditions_hold(condition):
    outcome = only(classify(failed_at(Stage.AUTH, condition=condition)))
    assert outcome.kind is OutcomeKind.HELD
    assert outcome.scope is Scope.RELAY
    assert outcome.guidance == condition.value


@given(stage=st.sampled_from(list(Stage)), code=st.integers(200, 399))
def test_a_session_that_failed_on_a_positive_reply_never_delivered(stage, code):
    """A failure is never a delivery, whatever positive reply ended it: a 250 to AUTH (a
    sink that says 250 to everything) had recorded messages as sent."""
    outcome = only(classify(failed_at(stage, Reply(code, None, "Ok"))))
    assert outcome.kind is not OutcomeKind.SENT
    assert outcome.guidance in CATALOGUE


@pytest.mark.parametrize("code", [250, 220, 334])
def test_a_login_not_confirmed_with_235_holds_the_relay_s_mail(code):
    reply = Reply(code, None, "2.0.0 Ok")
    outcome = only(classify(failed_at(Stage.AUTH, reply)))
    assert (outcome.kind, outcome.scope) == (OutcomeKind.HELD, Scope.RELAY)
    assert outcome.guidance == Condition.AUTH_NOT_CONFIRMED.value
    assert outcome.reply == reply


@pytest.mark.parametrize("stage", [Stage.GREETING, Stage.EHLO, Stage.STARTTLS])
def test_a_positive_reply_ending_set_up_is_the_relay_s_protocol_error(stage):
    outcome = only(classify(failed_at(stage, Reply(250, None, "Ok"))))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.guidance == Condition.PROTOCOL_ERROR.value


def test_unknown_relay_holds():
    outcome = only(classify(failed_at(Stage.CONNECT, condition=Condition.RELAY_NOT_CONFIGURED)))
    assert outcome.kind is OutcomeKind.HELD


@pytest.mark.parametrize("stage", [Stage.MAIL, Stage.RCPT])
def test_auth_required_later_in_the_session_holds_too(stage):
    reply = Reply(530, "5.7.0", "Authentication required")
    if stage is Stage.MAIL:
        outcomes = classify(report(mail=reply))
    else:
        outcomes = classify(report(rcpt={A: reply, B: reply}))
    assert only(outcomes).kind is OutcomeKind.HELD
    assert only(outcomes).scope is Scope.RELAY


# --- SIZE check and MAIL FROM: the message's problem -----------------------------------------

@pytest.mark.parametrize("condition", [Condition.MESSAGE_TOO_BIG, Condition.SMTPUTF8_REQUIRED])
def test_size_check_failure_fails_the_message(condition):
    outcome = only(classify(failed_at(Stage.SIZE_CHECK, condition=condition)))
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.scope is Scope.MESSAGE
    assert outcome.guidance == condition.value


@pytest.mark.parametrize("reply", [
    Reply(550, "5.1.7", "Sender address rejected"),
    Reply(552, "5.3.4", "Message size exceeds fixed limit"),
    Reply(553, "5.1.8", "Sender domain does not exist"),
    Reply(501, "5.5.4", "Syntax error in parameters"),
])
def test_5xx_at_mail_fails_every_recipient(reply):
    outcome = only(classify(report(mail=reply)))
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.scope is Scope.MESSAGE
    assert outcome.reply == reply
    assert outcome.guidance == key_for_reply(reply)


@pytest.mark.parametrize("reply", [
    Reply(451, "4.3.0", "Temporary failure"),
    Reply(452, "4.3.1", "Insufficient system storage"),
    Reply(450, "4.1.8", "Sender address rejected: Domain not found"),
])
def test_4xx_at_mail_defers_every_recipient(reply):
    outcome = only(classify(report(mail=reply)))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.scope is Scope.MESSAGE
    assert outcome.reply == reply


def test_mail_refusal_wins_over_anything_later():
    refused = Reply(550, "5.7.1", "Sender blocked")
    outcomes = classify(report(mail=refused, rcpt={A: OK, B: OK}, data=OK_DATA))
    assert kinds(outcomes) == {A: OutcomeKind.FAILED, B: OutcomeKind.FAILED}


# --- RCPT TO: each recipient on its own ------------------------------------------------------

def test_rcpt_550_for_one_of_two_fails_that_one_and_the_other_follows_data():
    unknown = Reply(550, "5.1.1", "User unknown")
    outcomes = classify(report(rcpt={A: unknown, B: OK}, data=OK_DATA))
    assert kinds(outcomes) == {A: OutcomeKind.FAILED, B: OutcomeKind.SENT}
    assert outcomes[A].scope is Scope.RECIPIENT
    assert outcomes[A].reply == unknown
    assert outcomes[A].guidance == "smtp.5.1.1"
    assert outcomes[B].reply == OK_DATA


@pytest.mark.parametrize(("data", "kind"), [
    (Reply(451, "4.3.0", "try later"), OutcomeKind.DEFERRED),
    (Reply(554, "5.7.1", "spam"), OutcomeKind.FAILED),
])
def test_rcpt_refusal_is_not_overwritten_by_the_data_reply(data, kind):
    unknown = Reply(550, "5.1.1", "User unknown")
    outcomes = classify(report(rcpt={A: unknown, B: OK}, data=data))
    assert outcomes[A].kind is OutcomeKind.FAILED
    assert outcomes[A].reply == unknown
    assert outcomes[B].kind is kind
    assert outcomes[B].scope is Scope.MESSAGE


def test_rcpt_452_defers_that_recipient_only():
    full = Reply(452, "4.2.2", "Mailbox full")
    outcomes = classify(report(rcpt={A: full, B: OK}, data=OK_DATA))
    assert kinds(outcomes) == {A: OutcomeKind.DEFERRED, B: OutcomeKind.SENT}
    assert outcomes[A].scope is Scope.RECIPIENT
    assert outcomes[A].reply == full


def test_greylisting_at_rcpt_is_a_recipient_scope_throttle():
    grey = Reply(450, "4.7.1", "Greylisted, try again later")
    outcome = classify(report(rcpt={A: grey, B: OK}, data=OK_DATA))[A]
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.scope is Scope.RECIPIENT
    assert outcome.detail == "throttled"


def test_every_rcpt_refused_means_no_data_and_each_keeps_its_own_reply():
    unknown, full = Reply(550, "5.1.1", "User unknown"), Reply(452, "4.2.2", "Mailbox full")
    outcomes = classify(report(rcpt={A: unknown, B: full}))
    assert kinds(outcomes) == {A: OutcomeKind.FAILED, B: OutcomeKind.DEFERRED}
    assert outcomes[A].reply == unknown
    assert outcomes[B].reply == full


def test_single_recipient_accepted_and_sent():
    outcomes = classify(report(recipients=(A,), data=OK_DATA))
    assert outcomes == {A: Outcome(OutcomeKind.SENT, Scope.MESSAGE, key_for_reply(OK_DATA),
                                   OK_DATA)}


# --- DATA ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "kind"), [
    (Reply(250, "2.0.0", "Ok: queued"), OutcomeKind.SENT),
    (Reply(451, "4.3.0", "Error: queue file write error"), OutcomeKind.DEFERRED),
    (Reply(452, "4.3.1", "Insufficient system storage"), OutcomeKind.DEFERRED),
    (Reply(554, "5.7.1", "Message rejected as spam"), OutcomeKind.FAILED),
    (Reply(552, "5.3.4", "Message too big"), OutcomeKind.FAILED),
    (Reply(550, "5.7.1", "Message content rejected"), OutcomeKind.FAILED),
])
def test_data_reply_decides_for_every_accepted_recipient(data, kind):
    outcome = only(classify(report(data=data, data_sent=True)))
    assert outcome.kind is kind
    assert outcome.scope is Scope.MESSAGE
    assert outcome.reply == data
    assert outcome.guidance == key_for_reply(data)


@pytest.mark.parametrize("condition", [Condition.CONNECTION_DROPPED, Condition.COMMAND_TIMEOUT])
def test_drop_after_the_final_dot_is_uncertain(condition):
    outcome = only(classify(failed_at(Stage.AFTER_DATA, condition=condition, data_sent=True)))
    assert outcome.kind is OutcomeKind.UNCERTAIN
    assert outcome.scope is Scope.MESSAGE
    assert outcome.guidance == "uncertain_delivery"
    assert outcome.guidance in CATALOGUE
    assert outcome.detail == "boom"


def test_drop_after_the_final_dot_keeps_rcpt_refusals():
    unknown = Reply(550, "5.1.1", "User unknown")
    failure = SessionFailure(Stage.AFTER_DATA, condition=Condition.CONNECTION_DROPPED)
    outcomes = classify(report(rcpt={A: unknown, B: OK}, failure=failure, data_sent=True))
    assert kinds(outcomes) == {A: OutcomeKind.FAILED, B: OutcomeKind.UNCERTAIN}


def test_data_sent_without_any_reply_is_uncertain_even_without_a_failure():
    """The final dot left Outbox and nothing came back: that is the uncertain window,
    whatever else the report says; resending without an `uncertain` mark could duplicate."""
    outcome = only(classify(report(data_sent=True)))
    assert outcome.kind is OutcomeKind.UNCERTAIN


@pytest.mark.parametrize(("stage", "condition"), [
    (Stage.DATA, Condition.CONNECTION_DROPPED),
    (Stage.DATA, Condition.COMMAND_TIMEOUT),
    (Stage.RCPT, Condition.CONNECTION_DROPPED),
])
def test_drop_before_the_final_dot_is_deferred(stage, condition):
    outcome = only(classify(failed_at(stage, condition=condition, rcpt={A: OK, B: OK})))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.scope is Scope.MESSAGE
    assert outcome.guidance == condition.value


def test_session_that_ends_without_data_reply_or_failure_is_deferred():
    outcome = only(classify(report(data=None)))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.guidance == Condition.PROTOCOL_ERROR.value


def test_recipients_never_reached_at_rcpt_follow_the_session_failure():
    failure = SessionFailure(Stage.RCPT, condition=Condition.CONNECTION_DROPPED)
    outcomes = classify(report(rcpt={A: OK}, failure=failure))
    assert kinds(outcomes) == {A: OutcomeKind.DEFERRED, B: OutcomeKind.DEFERRED}


# --- 421 anywhere ----------------------------------------------------------------------------

SERVICE_CLOSING = Reply(421, "4.7.0", "Too many messages, slow down")


@pytest.mark.parametrize("where", ["greeting", "ehlo", "starttls", "auth", "mail", "rcpt",
                                   "rcpt-session", "data", "data-session"])
def test_421_anywhere_is_a_throttled_relay_scope_deferral(where):
    if where in ("greeting", "ehlo", "starttls", "auth"):
        rep = failed_at(Stage(where), SERVICE_CLOSING)
    elif where == "mail":
        rep = report(mail=SERVICE_CLOSING)
    elif where == "rcpt":
        rep = report(rcpt={A: SERVICE_CLOSING, B: SERVICE_CLOSING})
    elif where == "rcpt-session":
        rep = failed_at(Stage.RCPT, SERVICE_CLOSING)
    elif where == "data":
        rep = report(data=SERVICE_CLOSING)
    else:
        rep = failed_at(Stage.DATA, SERVICE_CLOSING, rcpt={A: OK, B: OK})
    outcome = only(classify(rep))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.scope is Scope.RELAY
    assert outcome.detail == "throttled"
    assert outcome.reply == SERVICE_CLOSING


@pytest.mark.parametrize("reply", [Reply(451, "4.7.1", "rate limit"),
                                   Reply(450, "4.7.0", "slow down")])
def test_4_7_x_at_mail_is_throttled_but_keeps_message_scope(reply):
    outcome = only(classify(report(mail=reply)))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.scope is Scope.MESSAGE
    assert outcome.detail == "throttled"


# --- properties ------------------------------------------------------------------------------

_WHERE = st.sampled_from(["greeting", "ehlo", "starttls", "mail", "rcpt", "rcpt-session",
                          "data", "data-session"])


def _report_with(reply: Reply, where: str) -> DeliveryReport:
    """A two-recipient report where `reply` is the only non-2xx reply, at `where`."""
    if where in ("greeting", "ehlo", "starttls"):
        return failed_at(Stage(where), reply)
    if where == "mail":
        return report(mail=reply)
    if where == "rcpt":
        return report(rcpt={A: reply, B: OK}, data=OK_DATA)
    if where == "rcpt-session":
        return failed_at(Stage.RCPT, reply, rcpt={A: OK})
    if where == "data":
        return report(data=reply, data_sent=True)
    return failed_at(Stage.DATA, reply, rcpt={A: OK, B: OK})


_ENHANCED_TAIL = st.tuples(st.integers(0, 9), st.integers(0, 20))


@given(st.integers(500, 599), st.one_of(st.none(), _ENHANCED_TAIL), _WHERE)
def test_a_5xx_outside_auth_never_yields_deferred(code, enhanced, where):
    reply = Reply(code, f"5.{enhanced[0]}.{enhanced[1]}" if enhanced else None, "no")
    for outcome in classify(_report_with(reply, where)).values():
        if outcome.reply == reply:
            assert outcome.kind in (OutcomeKind.FAILED, OutcomeKind.HELD)


@given(st.integers(500, 599), st.one_of(st.none(), _ENHANCED_TAIL))
def test_a_5xx_at_auth_always_holds(code, enhanced):
    reply = Reply(code, f"5.{enhanced[0]}.{enhanced[1]}" if enhanced else None, "no")
    assert only(classify(failed_at(Stage.AUTH, reply))).kind is OutcomeKind.HELD


@given(st.integers(400, 499), st.one_of(st.none(), _ENHANCED_TAIL),
       st.sampled_from(["greeting", "ehlo", "starttls", "auth", "mail", "rcpt", "rcpt-session",
                        "data", "data-session"]))
def test_a_4xx_never_yields_failed(code, enhanced, where):
    reply = Reply(code, f"4.{enhanced[0]}.{enhanced[1]}" if enhanced else None, "later")
    rep = failed_at(Stage.AUTH, reply) if where == "auth" else _report_with(reply, where)
    for outcome in classify(rep).values():
        if outcome.reply == reply:
            assert outcome.kind is OutcomeKind.DEFERRED


@given(st.sampled_from(list(Stage)), st.sampled_from(list(Condition)), st.booleans())
def test_every_recipient_gets_exactly_one_outcome(stage, condition, data_sent):
    rep = failed_at(stage, condition=condition, data_sent=data_sent and stage is Stage.AFTER_DATA)
    outcomes = classify(rep)
    assert set(outcomes) == {A, B}
    for outcome in outcomes.values():
        assert outcome.guidance in CATALOGUE
        if outcome.scope is Scope.RELAY:
            assert outcome.kind in (OutcomeKind.DEFERRED, OutcomeKind.HELD)
