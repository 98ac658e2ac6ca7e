"""core.recovery: what becomes of a message whose claim ended without a verdict."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.model import EventType, MessageStatus
from outbox.core.recovery import AbandonedClaim, Cause, Recovery
from outbox.core.retry import RetryPolicy

T0 = datetime(2030, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
DEFAULT = Recovery(RetryPolicy())  # production defaults: 20 attempts, 3 days


def claim(cause: Cause = Cause.OWNER_GONE, attempts: int = 0, sent: bool = True,
          accepted: datetime = T0, held: timedelta = timedelta(0)) -> AbandonedClaim:
    return AbandonedClaim(owner="host:42:abcd", attempts_made=attempts, accepted_at=accepted,
                          held_for=held, cause=cause, may_have_sent=sent, detail="boom")


@pytest.mark.parametrize("cause", [Cause.OWNER_GONE, Cause.LEASE_EXPIRED])
def test_a_vanished_worker_s_message_is_tried_again_at_once_as_uncertain(cause: Cause) -> None:
    verdict = DEFAULT.decide(claim(cause), NOW, random.Random(1))

    assert (verdict.status, verdict.due_at) == (MessageStatus.DEFERRED, NOW)
    assert [e.type for e in verdict.events] == [EventType.UNCERTAIN, EventType.DEFERRED]
    assert all(e.attempt == 1 for e in verdict.events)
    assert "host:42:abcd" in verdict.events[0].detail
    assert verdict.events[1].guidance == "worker_stopped"


def test_a_crash_before_any_relay_backs_off_and_is_not_uncertain() -> None:
    verdict = DEFAULT.decide(claim(Cause.CRASHED, attempts=2, sent=False), NOW,
                             random.Random(1))

    assert verdict.status is MessageStatus.DEFERRED
    assert verdict.due_at is not None and verdict.due_at > NOW, "never a hot loop"
    assert [e.type for e in verdict.events] == [EventType.DEFERRED]
    assert verdict.events[0].guidance == "internal_error"
    assert "failed inside Outbox: boom" in verdict.events[0].detail


def test_the_last_allowed_attempt_fails_the_message() -> None:
    verdict = DEFAULT.decide(claim(attempts=19), NOW, random.Random(1))

    assert verdict.status is MessageStatus.FAILED and verdict.fails
    assert verdict.fail_guidance == "max_attempts_reached"
    assert [e.type for e in verdict.events] == [EventType.UNCERTAIN, EventType.FAILED]


def test_a_message_past_max_age_fails() -> None:
    verdict = DEFAULT.decide(claim(accepted=NOW - timedelta(days=3)), NOW, random.Random(1))

    assert verdict.fail_guidance == "max_age_reached"


def test_time_held_does_not_count_against_max_age() -> None:
    verdict = DEFAULT.decide(claim(accepted=NOW - timedelta(days=3), held=timedelta(hours=1)),
                             NOW, random.Random(1))

    assert verdict.status is MessageStatus.DEFERRED


def test_with_hold_an_uncertain_message_is_held_and_never_fails() -> None:
    hold = Recovery(RetryPolicy(max_attempts=1), "hold")

    verdict = hold.decide(claim(attempts=5), NOW, random.Random(1))

    assert (verdict.status, verdict.due_at) == (MessageStatus.HELD, None)
    assert verdict.hold_reason.startswith("delivery uncertain")
    assert [e.type for e in verdict.events] == [EventType.UNCERTAIN, EventType.HELD]


def test_with_hold_a_crash_that_sent_nothing_is_not_held() -> None:
    hold = Recovery(RetryPolicy(), "hold")

    verdict = hold.decide(claim(Cause.CRASHED, sent=False), NOW, random.Random(1))

    assert verdict.status is MessageStatus.DEFERRED


@given(attempts=st.integers(0, 60), cause=st.sampled_from(list(Cause)), sent=st.booleans(),
       seed=st.integers(0, 2**32))
def test_recovery_never_allows_more_than_max_attempts(attempts: int, cause: Cause, sent: bool,
                                                       seed: int) -> None:
    verdict = DEFAULT.decide(claim(cause, attempts, sent), NOW, random.Random(seed))

    if attempts + 1 >= DEFAULT.policy.max_attempts:
        assert verdict.status is MessageStatus.FAILED
    else:
        waiting = MessageStatus.QUEUED if cause is Cause.RESTORED else MessageStatus.DEFERRED
        assert verdict.status is waiting
        assert verdict.due_at is not None and verdict.due_at >= NOW
    assert sum(e.type is EventType.UNCERTAIN for e in verdict.events) == int(sent)


def test_mail_in_flight_at_backup_time_comes_back_queued_now_and_uncertain() -> None:
    verdict = DEFAULT.decide(claim(Cause.RESTORED, 2, True), NOW, random.Random(1))

    assert (verdict.status, verdict.due_at) == (MessageStatus.QUEUED, NOW)
    assert [e.type for e in verdict.events] == [EventType.UNCERTAIN, EventType.QUEUED]
    assert {e.attempt for e in verdict.events} == {3}
    assert "in flight when the backup was taken" in verdict.events[0].detail


def test_mail_in_flight_at_backup_time_past_its_limit_fails() -> None:
    last = DEFAULT.policy.max_attempts - 1
    verdict = DEFAULT.decide(claim(Cause.RESTORED, last, True), NOW, random.Random(1))

    assert verdict.status is MessageStatus.FAILED
