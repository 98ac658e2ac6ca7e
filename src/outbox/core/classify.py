"""Turn a `DeliveryReport` into one `Outcome` per recipient.

Scope comes first (Postfix `smtp_trouble.c`): a failure before MAIL FROM is
the relay's, a failure of MAIL FROM or DATA is the message's, a RCPT reply is
the recipient's. Permanence comes from the reply code, never from which
exception fired.
"""

from __future__ import annotations

from outbox.core.model import Outcome, OutcomeKind, Scope
from outbox.core.outcomes import failure_outcome, reply_outcome
from outbox.core.relay_state import SETUP_STAGES, session_outcome
from outbox.core.report import Condition, DeliveryReport, Stage


def classify(report: DeliveryReport) -> dict[str, Outcome]:
    """One outcome per envelope recipient of the attempt."""
    if report.failure is not None and report.failure.stage in SETUP_STAGES:
        return _everyone(report, session_outcome(report.failure))
    if report.failure is not None and report.failure.stage in (Stage.PREPARE, Stage.SIZE_CHECK):
        return _everyone(report, failure_outcome(report.failure, Scope.MESSAGE))
    if report.mail_reply is not None and not report.mail_reply.is_success:
        return _everyone(report, reply_outcome(report.mail_reply, Scope.MESSAGE))
    outcomes = _rcpt_outcomes(report)
    accepted = [r for r in report.recipients if r not in outcomes]
    after = _after_rcpt_outcome(report)
    outcomes.update({rcpt: after for rcpt in accepted})
    return outcomes


def _everyone(report: DeliveryReport, outcome: Outcome) -> dict[str, Outcome]:
    return {rcpt: outcome for rcpt in report.recipients}


def _rcpt_outcomes(report: DeliveryReport) -> dict[str, Outcome]:
    """Recipients the server turned down at RCPT, each on its own."""
    refused = {}
    for rcpt, reply in report.rcpt_replies.items():
        if not reply.is_success:
            refused[rcpt] = reply_outcome(reply, Scope.RECIPIENT)
    return refused


def _after_rcpt_outcome(report: DeliveryReport) -> Outcome:
    """The fate of recipients accepted at RCPT (or never reached)."""
    if report.data_reply is not None:
        return reply_outcome(report.data_reply, Scope.MESSAGE)
    if report.data_sent:
        # The final "." left and no reply came back: the relay may have the message.
        return Outcome(OutcomeKind.UNCERTAIN, Scope.MESSAGE, "uncertain_delivery",
                       detail=report.failure.detail if report.failure else "")
    if report.failure is None:
        # Nothing accepted, so DATA was never sent; every RCPT already has an outcome.
        return Outcome(OutcomeKind.DEFERRED, Scope.MESSAGE, Condition.PROTOCOL_ERROR.value,
                       detail="the session ended without a reply to DATA")
    return failure_outcome(report.failure, Scope.MESSAGE)
