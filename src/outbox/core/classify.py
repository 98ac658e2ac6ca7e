"""Turn a `DeliveryReport` into one `Outcome` per recipient.

Scope comes first (Postfix `smtp_trouble.c`): a failure before MAIL FROM is
the relay's, a failure of MAIL FROM or DATA is the message's, a RCPT reply is
the recipient's. Permanence comes from the reply code, never from which
exception fired.
"""

from __future__ import annotations

from dataclasses import replace

from outbox.core import guidance
from outbox.core.model import Outcome, OutcomeKind, Reply, Scope
from outbox.core.replies import ReplyClass, ReplyCode, classify_reply
from outbox.core.report import Condition, DeliveryReport, SessionFailure, Stage

_RELAY_STAGES = frozenset({Stage.CONNECT, Stage.GREETING, Stage.EHLO, Stage.STARTTLS, Stage.AUTH})


def classify(report: DeliveryReport) -> dict[str, Outcome]:
    """One outcome per envelope recipient of the attempt."""
    if report.failure is not None and report.failure.stage in _RELAY_STAGES:
        return _everyone(report, _hold_if_relay_refused(_session_outcome(report.failure,
                                                                          Scope.RELAY)))
    if report.failure is not None and report.failure.stage in (Stage.PREPARE, Stage.SIZE_CHECK):
        return _everyone(report, _session_outcome(report.failure, Scope.MESSAGE))
    if report.mail_reply is not None and not report.mail_reply.is_success:
        return _everyone(report, _reply_outcome(report.mail_reply, Scope.MESSAGE))
    outcomes = _rcpt_outcomes(report)
    accepted = [r for r in report.recipients if r not in outcomes]
    after = _after_rcpt_outcome(report)
    outcomes.update({rcpt: after for rcpt in accepted})
    return outcomes


def _hold_if_relay_refused(outcome: Outcome) -> Outcome:
    """A relay that refuses the session (a 5xx greeting, EHLO or STARTTLS) refuses every
    message: its mail waits for an operator, and no message fails for the relay's fault."""
    if outcome.kind is OutcomeKind.FAILED:
        return replace(outcome, kind=OutcomeKind.HELD)
    return outcome


def _everyone(report: DeliveryReport, outcome: Outcome) -> dict[str, Outcome]:
    return {rcpt: outcome for rcpt in report.recipients}


def _rcpt_outcomes(report: DeliveryReport) -> dict[str, Outcome]:
    """Recipients the server turned down at RCPT, each on its own."""
    refused = {}
    for rcpt, reply in report.rcpt_replies.items():
        if not reply.is_success:
            refused[rcpt] = _reply_outcome(reply, Scope.RECIPIENT)
    return refused


def _after_rcpt_outcome(report: DeliveryReport) -> Outcome:
    """The fate of recipients accepted at RCPT (or never reached)."""
    if report.data_reply is not None:
        return _reply_outcome(report.data_reply, Scope.MESSAGE)
    if report.data_sent:
        # The final "." left and no reply came back: the relay may have the message.
        return Outcome(OutcomeKind.UNCERTAIN, Scope.MESSAGE, "uncertain_delivery",
                       detail=report.failure.detail if report.failure else "")
    if report.failure is None:
        # Nothing accepted, so DATA was never sent; every RCPT already has an outcome.
        return Outcome(OutcomeKind.DEFERRED, Scope.MESSAGE, Condition.PROTOCOL_ERROR.value,
                       detail="the session ended without a reply to DATA")
    return _session_outcome(report.failure, Scope.MESSAGE)


def _session_outcome(failure: SessionFailure, scope: Scope) -> Outcome:
    if failure.reply is not None:
        return _reply_outcome(failure.reply, scope, during_auth=failure.stage is Stage.AUTH)
    condition = failure.condition or Condition.PROTOCOL_ERROR
    kind = _CONDITION_KIND.get(condition, OutcomeKind.DEFERRED)
    return Outcome(kind, scope, condition.value, detail=failure.detail)


# Conditions that retrying cannot fix without an operator. Credentials and
# TLS trust problems hold the relay's mail; a message that cannot fit fails.
_CONDITION_KIND = {
    Condition.AUTH_NOT_OFFERED: OutcomeKind.HELD,
    Condition.AUTH_NEEDS_TLS: OutcomeKind.HELD,
    Condition.TOKEN_REFRESH_FAILED: OutcomeKind.HELD,
    Condition.AWAITING_CREDENTIALS: OutcomeKind.HELD,
    Condition.RELAY_NOT_CONFIGURED: OutcomeKind.HELD,
    Condition.MESSAGE_TOO_BIG: OutcomeKind.FAILED,
    Condition.SMTPUTF8_REQUIRED: OutcomeKind.FAILED,
    Condition.ATTACHMENT_CORRUPT: OutcomeKind.HELD,  # never send a damaged file; an operator looks
}


def _reply_outcome(reply: Reply, scope: Scope, *, during_auth: bool = False) -> Outcome:
    reply_class = classify_reply(reply, during_auth=during_auth)
    key = guidance.key_for_reply(reply, during_auth=during_auth)
    if reply_class is ReplyClass.SUCCESS:
        return Outcome(OutcomeKind.SENT, scope, key, reply)
    if reply_class is ReplyClass.AUTH:
        return Outcome(OutcomeKind.HELD, Scope.RELAY, key, reply)
    if reply_class is ReplyClass.THROTTLED:
        # 421 closes the session whatever command it answers: the relay's trouble (STYLE 2).
        closing = reply.code == ReplyCode.SERVICE_NOT_AVAILABLE
        return Outcome(OutcomeKind.DEFERRED, Scope.RELAY if closing else scope, key,
                       reply, detail="throttled")
    if reply_class is ReplyClass.TRANSIENT:
        return Outcome(OutcomeKind.DEFERRED, scope, key, reply)
    return Outcome(OutcomeKind.FAILED, scope, key, reply)
