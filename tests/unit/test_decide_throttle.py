"""A relay that says "slow down" (421, 4.7.x) paces the relay, and its mail waits
without spending attempts (SPEC F3): only max_age ends it. A tester saw a message
answered `421 4.7.0 Slow down` at MAIL fail at attempt 3 of max_attempts 3."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.classify import classify
from outbox.core.decide import (
    BUSY_NOT_COUNTED,
    NOT_COUNTED,
    THROTTLED_NOT_COUNTED,
    AttemptContext,
    AttemptVerdict,
    decide_attempt,
)
from outbox.core.governor import throttled
from outbox.core.model import MessageStatus, Outcome, OutcomeKind, RecipientStatus, Reply, Scope
from outbox.core.replies import parse_reply
from outbox.core.report import Condition, DeliveryReport, SessionFailure, Stage
from outbox.core.retry import RetryPolicy

A, B = "a@example.com", "b@example.org"
ACCEPTED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy()  # the production defaults: max_attempts 20, max_age 3 days


def at_mail(code: int, text: str) -> dict[str, Outcome]:
    report = DeliveryReport(relay="r", recipients=(A,), mail_reply=parse_reply(code, text))
    return classify(report)


def decide(outcomes: dict[str, Outcome], attempt: int, now: datetime,
           statuses: dict[str, RecipientStatus] | None = None) -> AttemptVerdict:
    ctx = AttemptContext(attempt=attempt, accepted_at=ACCEPTED, held_for=timedelta(0),
                         statuses=statuses or {A: RecipientStatus.PENDING})
    return decide_attempt(ctx, outcomes, POLICY, now, random.Random(0))


SLOW_DOWN = [(421, "4.7.0 Slow down"), (451, "4.7.1 Rate limit exceeded, slow down"),
             (450, "4.7.0 Too many messages, try later"), (421, "Service not available")]


@pytest.mark.parametrize(("code", "text"), SLOW_DOWN)
def test_slow_down_at_mail_is_not_counted(code: int, text: str) -> None:
    verdict = decide(at_mail(code, text), attempt=1, now=ACCEPTED)
    assert verdict.status is MessageStatus.DEFERRED
    assert verdict.count_attempt is False
    assert verdict.events[0].detail.endswith(THROTTLED_NOT_COUNTED)


@pytest.mark.parametrize(("code", "text"), SLOW_DOWN)
def test_slow_down_never_fails_the_message_by_attempts(code: int, text: str) -> None:
    """Past max_attempts (the attempt number stays at 1 when nothing is counted, but
    even a message that reached the limit otherwise is not failed by it)."""
    verdict = decide(at_mail(code, text), attempt=POLICY.max_attempts + 5,
                     now=ACCEPTED + timedelta(hours=5))
    assert verdict.status is MessageStatus.DEFERRED and verdict.count_attempt is False


def test_slow_down_ends_only_at_max_age() -> None:
    outcomes = at_mail(421, "4.7.0 Slow down")
    verdict = decide(outcomes, attempt=1, now=ACCEPTED + POLICY.max_age)
    assert verdict.status is MessageStatus.FAILED
    (update,) = verdict.recipient_updates
    assert update.guidance == "max_age_reached"


def test_the_wait_grows_with_the_time_already_waited() -> None:
    """No attempt count spaces the tries out, so the wait doubles with the message's age,
    from first_delay up to max_delay."""
    outcomes = at_mail(421, "4.7.0 Slow down")
    waits = []
    now = ACCEPTED
    for _ in range(12):
        verdict = decide(outcomes, attempt=1, now=now)
        assert verdict.due_at is not None
        waits.append(verdict.due_at - now)
        now = verdict.due_at
    assert POLICY.first_delay <= waits[0] <= POLICY.first_delay * 1.2
    assert waits[4] > waits[1] * 3  # growing, not a try every first_delay for three days
    assert max(waits) <= POLICY.max_delay * 1.2


def test_a_temporary_failure_that_is_not_throttling_still_counts() -> None:
    verdict = decide(at_mail(451, "4.3.0 Try later"), attempt=1, now=ACCEPTED)
    assert verdict.count_attempt is True
    assert NOT_COUNTED not in verdict.events[0].detail


def test_throttled_recipient_next_to_a_delivered_one_is_not_counted() -> None:
    report = DeliveryReport(relay="r", recipients=(A, B), mail_reply=parse_reply(250, "ok"),
                            rcpt_replies={A: parse_reply(250, "ok"),
                                          B: parse_reply(450, "4.7.1 Greylisted, try later")},
                            data_reply=parse_reply(250, "2.0.0 queued"), data_sent=True)
    statuses = {A: RecipientStatus.PENDING, B: RecipientStatus.PENDING}
    verdict = decide(classify(report), attempt=1, now=ACCEPTED, statuses=statuses)
    assert verdict.status is MessageStatus.DEFERRED and verdict.count_attempt is False


def test_a_throttled_and_a_temporary_failure_together_count() -> None:
    statuses = {A: RecipientStatus.PENDING, B: RecipientStatus.PENDING}
    slow = Outcome(OutcomeKind.DEFERRED, Scope.RECIPIENT, "smtp.4.7.1",
                   Reply(450, "4.7.1", "Greylisted"))
    busy = Outcome(OutcomeKind.DEFERRED, Scope.RECIPIENT, "smtp.450",
                   Reply(450, "4.2.1", "Mailbox busy"))
    assert decide({A: slow, B: busy}, 1, ACCEPTED, statuses).count_attempt is True


@given(st.integers(400, 499), st.integers(0, 9), st.integers(0, 99))
def test_throttled_is_exactly_the_governors_throttle(code: int, subject: int,
                                                     detail: int) -> None:
    reply = parse_reply(code, f"4.{subject}.{detail} something")
    outcome = Outcome(OutcomeKind.DEFERRED, Scope.MESSAGE, "k", reply)
    assert throttled(outcome) == (code == 421 or subject == 7)


def test_a_try_that_waited_too_long_for_a_session_says_so_and_is_not_counted() -> None:
    """delivery/lane.py: the relay did not fail, so the timeline must not say it did
    (found by a stranger pass: it said "the relay failed, not the message")."""
    failure = SessionFailure(Stage.CONNECT, condition=Condition.RELAY_SESSIONS_BUSY,
                             detail="busy", retry_after=timedelta(seconds=18))
    outcomes = classify(DeliveryReport(relay="r", recipients=(A,), failure=failure))
    verdict = decide(outcomes, attempt=1, now=ACCEPTED + timedelta(minutes=1))
    assert verdict.status is MessageStatus.DEFERRED and verdict.count_attempt is False
    assert verdict.events[0].detail == f"1 deferred; {BUSY_NOT_COUNTED}"
    assert "failed" not in BUSY_NOT_COUNTED
    # Due again after the turn it was told, spread by the jitter, never before.
    assert verdict.due_at is not None
    assert verdict.due_at >= ACCEPTED + timedelta(minutes=1, seconds=18)
