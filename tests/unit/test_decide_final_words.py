"""The words a message ends with when the retry policy gives up.

- A run of uncertain tries (the relay hung up after the final dot each time) ended
  "Every attempt failed temporarily ... fix it, then retry the message", though the
  relay probably had the message: the words now say so, and that a retry sends
  another copy.
- A message that expired (max_age) while its relay was down kept the recipient reply
  "... its mail waits without spending attempts" next to status failed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from outbox.core import guidance
from outbox.core.decide import AttemptContext, AttemptVerdict, decide_attempt
from outbox.core.model import EventType, MessageStatus, Outcome, OutcomeKind, RecipientStatus, Scope
from outbox.core.retry import RetryPolicy

A = "a@example.com"
ACCEPTED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy()
UNCERTAIN = Outcome(OutcomeKind.UNCERTAIN, Scope.MESSAGE, "uncertain_delivery",
                    detail="connection lost after the final dot")
BACKING_OFF = Outcome(OutcomeKind.DEFERRED, Scope.RELAY, "relay_backing_off", relay_wide=True,
                      detail="relay r is backing off until ...; its mail waits without "
                             "spending attempts")


def decide(outcome: Outcome, attempt: int, now: datetime) -> AttemptVerdict:
    ctx = AttemptContext(attempt=attempt, accepted_at=ACCEPTED, held_for=timedelta(0),
                         statuses={A: RecipientStatus.PENDING})
    return decide_attempt(ctx, {A: outcome}, POLICY, now, random.Random(0))


def test_uncertain_tries_that_reach_max_attempts_say_the_relay_probably_has_it() -> None:
    verdict = decide(UNCERTAIN, attempt=POLICY.max_attempts, now=ACCEPTED + timedelta(hours=1))
    assert verdict.status is MessageStatus.FAILED
    (update,) = verdict.recipient_updates
    assert update.guidance == guidance.GAVE_UP_UNCERTAIN
    assert update.reply is not None and "relay probably has it" in update.reply
    failed = next(e for e in verdict.events if e.type is EventType.FAILED)
    assert failed.guidance == guidance.GAVE_UP_UNCERTAIN
    assert "max_attempts" in (failed.detail or "") and "uncertain" in (failed.detail or "")
    words = guidance.describe(update.guidance)
    assert "probably received the message" in words.explanation
    assert "Message-ID" in words.next_step and "another copy" in words.next_step
    # The try itself still leaves its `uncertain` event: the copies are counted by those.
    assert [e.type for e in verdict.events].count(EventType.UNCERTAIN) == 1


def test_uncertain_tries_that_reach_max_age_say_so_too() -> None:
    verdict = decide(UNCERTAIN, attempt=2, now=ACCEPTED + POLICY.max_age)
    (update,) = verdict.recipient_updates
    assert update.status is RecipientStatus.FAILED
    assert update.guidance == guidance.GAVE_UP_UNCERTAIN


def test_deferred_tries_that_reach_max_attempts_keep_the_plain_words() -> None:
    later = Outcome(OutcomeKind.DEFERRED, Scope.MESSAGE, "protocol_error", detail="x")
    (update,) = decide(later, POLICY.max_attempts, ACCEPTED).recipient_updates
    assert update.guidance == "max_attempts_reached"


def test_expired_while_the_relay_was_down_says_it_expired_not_that_it_waits() -> None:
    verdict = decide(BACKING_OFF, attempt=1, now=ACCEPTED + POLICY.max_age)
    assert verdict.status is MessageStatus.FAILED
    (update,) = verdict.recipient_updates
    assert update.reply is not None
    assert "without spending attempts" not in update.reply
    assert "max_age" in update.reply
    words = guidance.describe(update.guidance or "")
    assert update.guidance == "max_age_reached" and "max_age" in words.explanation
    assert "retry the message" in words.next_step
