"""A relay as a whole: what one SMTP session says about it.

A failure while the session is being set up (connect, greeting, EHLO,
STARTTLS, AUTH) is the relay's, not any message's (Postfix `smtp_trouble.c`):
`session_outcome` says what it means for every message waiting on that relay,
and `is_login_failure` and `logged_in` tell the relay gate whether the relay's
credentials are the problem or just proved good.
"""

from __future__ import annotations

from dataclasses import replace

from outbox.core import guidance
from outbox.core.model import Outcome, OutcomeKind, Scope
from outbox.core.outcomes import failure_outcome
from outbox.core.report import DeliveryReport, SessionFailure, Stage

SETUP_STAGES = frozenset({Stage.CONNECT, Stage.GREETING, Stage.EHLO, Stage.STARTTLS,
                          Stage.AUTH})


def session_outcome(failure: SessionFailure) -> Outcome:
    """What a session that failed during set-up means for the relay's mail. A relay
    that refuses the session (a 5xx greeting, EHLO or STARTTLS) refuses every
    message: its mail waits for an operator, and no message fails for its fault."""
    outcome = failure_outcome(failure, Scope.RELAY)
    if outcome.kind is OutcomeKind.FAILED:
        return replace(outcome, kind=OutcomeKind.HELD)
    if outcome.kind is OutcomeKind.DEFERRED:
        # Refused, timed out, TLS broken, "421", a 4xx to AUTH, no token endpoint: the
        # relay's trouble, waited out by the governor's back-off, never by the message.
        return replace(outcome, scope=Scope.RELAY, relay_wide=True,
                       retry_after=failure.retry_after)
    return outcome


def is_login_failure(outcome: Outcome) -> bool:
    """The relay's credentials (not the network, not trust) are the problem."""
    return outcome.kind is OutcomeKind.HELD and guidance.describe(outcome.guidance).kind == "auth"


def logged_in(report: DeliveryReport) -> bool:
    """The session got past set-up (with the relay's credentials, if it has any)."""
    return report.failure is None or report.failure.stage not in SETUP_STAGES
