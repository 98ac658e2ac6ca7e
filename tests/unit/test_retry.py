"""RetryPolicy: the backoff schedule and the give-up rules (max_attempts, max_age, held)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.model import Outcome, OutcomeKind, Reply, Scope
from outbox.core.retry import RetryPolicy

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(first_delay=timedelta(seconds=60), max_delay=timedelta(hours=1),
                     max_attempts=5, max_age=timedelta(days=3))
DEFERRED = Outcome(OutcomeKind.DEFERRED, Scope.MESSAGE, "smtp.4.3.0",
                   Reply(451, "4.3.0", "Temporary failure"))
UNCERTAIN = Outcome(OutcomeKind.UNCERTAIN, Scope.MESSAGE, "uncertain_delivery")
SEEDS = range(200)


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


# --- delay -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("attempts_made", "base"), [
    (1, 60), (2, 120), (3, 240), (4, 480), (5, 960), (6, 1920), (7, 3840), (8, 7680),
])
def test_delay_doubles_from_first_delay_within_20_percent_jitter(attempts_made, base):
    delays = [seconds(POLICY.delay(attempts_made, random.Random(seed))) for seed in SEEDS]
    assert all(min(0.8 * base, 3600) <= d <= min(1.2 * base, 3600) for d in delays)


@pytest.mark.parametrize("attempts_made", [1, 2, 3, 4, 5])
def test_jitter_spreads_both_ways(attempts_made):
    base = 60 * 2 ** (attempts_made - 1)
    delays = [seconds(POLICY.delay(attempts_made, random.Random(seed))) for seed in SEEDS]
    assert min(delays) < 0.9 * base
    assert max(delays) > 1.1 * base
    assert len(set(delays)) > 150


def test_without_jitter_the_schedule_is_exact_doubling_up_to_max_delay():
    policy = RetryPolicy(first_delay=timedelta(seconds=60), max_delay=timedelta(hours=1),
                         jitter=0.0)
    rng = random.Random(1)
    assert [seconds(policy.delay(n, rng)) for n in range(1, 9)] == [
        60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_delay_after_zero_attempts_is_first_delay():
    policy = RetryPolicy(jitter=0.0)
    assert policy.delay(0, random.Random(0)) == policy.first_delay


def test_delay_after_very_many_attempts_is_max_delay_without_overflow():
    assert POLICY.delay(10_000, random.Random(0)) == POLICY.max_delay


def test_delay_is_reproducible_with_the_same_seed():
    assert POLICY.delay(3, random.Random(42)) == POLICY.delay(3, random.Random(42))


@given(
    attempts_made=st.integers(0, 500),
    first=st.floats(0, 100_000),
    cap=st.floats(0.001, 1_000_000),
    seed=st.integers(0, 2**32),
)
def test_no_delay_exceeds_max_delay_or_goes_negative(attempts_made, first, cap, seed):
    policy = RetryPolicy(first_delay=timedelta(seconds=first), max_delay=timedelta(seconds=cap))
    delay = policy.delay(attempts_made, random.Random(seed))
    assert timedelta(0) <= delay <= policy.max_delay


@given(attempts_made=st.integers(1, 30), seed=st.integers(0, 2**32))
def test_delay_stays_within_jitter_of_the_doubled_base(attempts_made, seed):
    base = 60 * 2 ** (attempts_made - 1)
    delay = seconds(POLICY.delay(attempts_made, random.Random(seed)))
    assert min(0.8 * base, 3600) - 1e-6 <= delay <= min(1.2 * base, 3600) + 1e-6


# --- decide: max_attempts --------------------------------------------------------------------

@pytest.mark.parametrize(("max_attempts", "attempts_made", "give_up"), [
    (1, 1, True),
    (2, 1, False),
    (2, 2, True),
    (5, 4, False),
    (5, 5, True),
    (5, 6, True),
    (20, 19, False),
    (20, 20, True),
])
def test_max_attempts_counts_every_try_the_first_included(max_attempts, attempts_made, give_up):
    policy = RetryPolicy(max_attempts=max_attempts)
    decision = policy.decide(DEFERRED, attempts_made, NOW, NOW, random.Random(0))
    assert decision.give_up is give_up
    if give_up:
        assert decision.retry_at is None
        assert "max_attempts" in decision.reason
        assert str(attempts_made) in decision.reason
        assert decision.guidance == "max_attempts_reached"
    else:
        assert decision.retry_at is not None


@pytest.mark.parametrize("outcome", [DEFERRED, UNCERTAIN])
def test_retry_at_is_now_plus_the_delay(outcome):
    decision = POLICY.decide(outcome, 2, NOW, NOW, random.Random(7))
    assert decision.give_up is False
    assert decision.retry_at == NOW + POLICY.delay(2, random.Random(7))
    assert decision.reason == ""


@pytest.mark.parametrize("kind", [OutcomeKind.SENT, OutcomeKind.FAILED, OutcomeKind.HELD])
def test_only_deferred_or_uncertain_outcomes_are_retried(kind):
    outcome = Outcome(kind, Scope.MESSAGE, "x")
    with pytest.raises(ValueError, match="only deferred or uncertain"):
        POLICY.decide(outcome, 1, NOW, NOW, random.Random(0))


# --- decide: retry_after ---------------------------------------------------------------------

def test_retry_after_raises_the_wait():
    outcome = Outcome(OutcomeKind.DEFERRED, Scope.RELAY, "smtp.421", Reply(421, None, "busy"),
                      retry_after=timedelta(minutes=30))
    decision = POLICY.decide(outcome, 1, NOW, NOW, random.Random(0))
    assert decision.retry_at == NOW + timedelta(minutes=30)


def test_retry_after_shorter_than_the_delay_changes_nothing():
    outcome = Outcome(OutcomeKind.DEFERRED, Scope.RELAY, "smtp.421", Reply(421, None, "busy"),
                      retry_after=timedelta(seconds=1))
    decision = POLICY.decide(outcome, 3, NOW, NOW, random.Random(5))
    assert decision.retry_at == NOW + POLICY.delay(3, random.Random(5))


def test_retry_after_may_exceed_max_delay_but_not_max_age():
    outcome = Outcome(OutcomeKind.DEFERRED, Scope.RELAY, "smtp.421", Reply(421, None, "busy"),
                      retry_after=timedelta(days=10))
    decision = POLICY.decide(outcome, 1, NOW, NOW, random.Random(0))
    assert decision.retry_at == NOW + POLICY.max_age


# --- decide: max_age and held time -----------------------------------------------------------

def test_the_last_retry_is_clamped_to_the_deadline():
    accepted = NOW - POLICY.max_age + timedelta(seconds=10)
    decision = POLICY.decide(DEFERRED, 1, accepted, NOW, random.Random(0))
    assert decision.give_up is False
    assert decision.retry_at == accepted + POLICY.max_age


@pytest.mark.parametrize("past_deadline", [timedelta(0), timedelta(seconds=1), timedelta(days=1)])
def test_gives_up_once_older_than_max_age(past_deadline):
    accepted = NOW - POLICY.max_age - past_deadline
    decision = POLICY.decide(DEFERRED, 1, accepted, NOW, random.Random(0))
    assert decision.give_up is True
    assert decision.retry_at is None
    assert "max_age" in decision.reason
    assert decision.guidance == "max_age_reached"


def test_time_spent_held_extends_the_deadline():
    accepted = NOW - POLICY.max_age - timedelta(hours=1)
    gave_up = POLICY.decide(DEFERRED, 1, accepted, NOW, random.Random(0))
    kept = POLICY.decide(DEFERRED, 1, accepted, NOW, random.Random(0),
                         held_for=timedelta(hours=2))
    assert gave_up.give_up is True
    assert kept.give_up is False
    assert kept.retry_at == NOW + POLICY.delay(1, random.Random(0))


def test_held_time_does_not_lift_max_attempts():
    decision = POLICY.decide(DEFERRED, POLICY.max_attempts, NOW, NOW, random.Random(0),
                             held_for=timedelta(days=30))
    assert decision.give_up is True


@given(
    attempts_made=st.integers(1, 40),
    age=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
    held_for=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
    retry_after=st.one_of(st.none(), st.timedeltas(min_value=timedelta(0),
                                                   max_value=timedelta(days=5))),
    kind=st.sampled_from([OutcomeKind.DEFERRED, OutcomeKind.UNCERTAIN]),
    seed=st.integers(0, 2**32),
)
def test_no_retry_is_scheduled_past_the_deadline(attempts_made, age, held_for, retry_after,
                                                 kind, seed):
    policy = RetryPolicy(max_attempts=30, max_age=timedelta(days=3))
    outcome = Outcome(kind, Scope.MESSAGE, "x", retry_after=retry_after)
    accepted = NOW - age
    deadline = accepted + policy.max_age + held_for
    decision = policy.decide(outcome, attempts_made, accepted, NOW, random.Random(seed),
                             held_for=held_for)
    if attempts_made >= policy.max_attempts or deadline <= NOW:
        assert decision.give_up is True
        assert decision.retry_at is None
    else:
        assert decision.give_up is False
        assert decision.retry_at is not None
        assert NOW <= decision.retry_at <= deadline
        if retry_after is not None:
            assert decision.retry_at == min(deadline, max(
                NOW + retry_after, NOW + policy.delay(attempts_made, random.Random(seed))))
