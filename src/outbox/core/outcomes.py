"""One reply or one session failure as an `Outcome`: the primitives that
`core.classify` (per recipient) and `core.relay_state` (per session) build on.
"""

from __future__ import annotations

from outbox.core import guidance
from outbox.core.model import Outcome, OutcomeKind, Reply, Scope
from outbox.core.replies import ReplyClass, ReplyCode, classify_reply
from outbox.core.report import Condition, SessionFailure, Stage


def failure_outcome(failure: SessionFailure, scope: Scope) -> Outcome:
    """What a session that ended early means, at `scope`."""
    if failure.reply is not None:
        return reply_outcome(failure.reply, scope, during_auth=failure.stage is Stage.AUTH)
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
