"""One reply or one session failure as an `Outcome`: the primitives that
`core.classify` (per recipient) and `core.relay_state` (per session) build on.
"""

from __future__ import annotations

from outbox.core import guidance
from outbox.core.model import Outcome, OutcomeKind, Reply, Scope
from outbox.core.replies import ReplyClass, ReplyCode, classify_reply
from outbox.core.report import Condition, SessionFailure, Stage


def failure_outcome(failure: SessionFailure, scope: Scope) -> Outcome:
    """What a session that ended early means, at `scope`. A session that ended on a
    positive reply (below 400) ended out of protocol: never a delivery. A 250 to AUTH
    (a sink that says 250 to everything) had recorded the message as sent, though MAIL
    was never given (found by a stranger pass); a login not confirmed with 235 holds the
    relay's mail as a refused one does, anything else is the relay's protocol error."""
    reply = failure.reply
    if reply is not None and reply.code >= 400:
        return reply_outcome(reply, scope, during_auth=failure.stage is Stage.AUTH)
    condition = failure.condition or (
        Condition.AUTH_NOT_CONFIRMED if reply is not None and failure.stage is Stage.AUTH
        else Condition.PROTOCOL_ERROR)
    kind = _CONDITION_KIND.get(condition, OutcomeKind.DEFERRED)
    scope = Scope.RELAY if kind is OutcomeKind.HELD and reply is not None else scope
    key = (guidance.GREETING_TIMEOUT if condition is Condition.CONNECTION_TIMEOUT
           and failure.stage is Stage.GREETING else condition.value)
    return Outcome(kind, scope, key, reply, detail=failure.detail)


# Conditions that retrying cannot fix without an operator. Credentials and
# TLS trust problems hold the relay's mail; a message that cannot fit fails.
_CONDITION_KIND = {
    Condition.AUTH_NOT_OFFERED: OutcomeKind.HELD,
    Condition.AUTH_NEEDS_TLS: OutcomeKind.HELD,
    Condition.AUTH_NOT_CONFIRMED: OutcomeKind.HELD,
    Condition.TOKEN_REFRESH_FAILED: OutcomeKind.HELD,
    Condition.AWAITING_CREDENTIALS: OutcomeKind.HELD,
    Condition.RELAY_NOT_CONFIGURED: OutcomeKind.HELD,
    Condition.MESSAGE_TOO_BIG: OutcomeKind.FAILED,
    Condition.SMTPUTF8_REQUIRED: OutcomeKind.FAILED,
    Condition.ATTACHMENT_CORRUPT: OutcomeKind.HELD,  # never send a damaged file; an operator looks
}


def reply_outcome(reply: Reply, scope: Scope, *, during_auth: bool = False) -> Outcome:
    """What one SMTP reply means, at `scope`: permanence from the code, never from
    which exception fired."""
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
