"""decide_attempt: per-recipient outcomes → message status, recipient updates, events."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.decide import (
    NOT_COUNTED,
    STEP,
    AttemptContext,
    AttemptVerdict,
    decide_attempt,
    decide_in_steps,
    final_status,
)
from outbox.core.model import (
    EventType,
    MessageStatus,
    Outcome,
    OutcomeKind,
    RecipientStatus,
    Reply,
    Scope,
)
from outbox.core.retry import RetryPolicy

A, B = "a@example.com", "b@example.org"
ACCEPTED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(first_delay=timedelta(seconds=60), max_delay=timedelta(hours=1),
                     max_attempts=5, max_age=timedelta(days=3))

SENT = Outcome(OutcomeKind.SENT, Scope.MESSAGE, "smtp.250", Reply(250, "2.0.0", "queued"))
LATER = Outcome(OutcomeKind.DEFERRED, Scope.MESSAGE, "smtp.4.3.0",
                Reply(451, "4.3.0", "Temporary failure"))
FULL = Outcome(OutcomeKind.DEFERRED, Scope.RECIPIENT, "smtp.4.2.2",
               Reply(452, "4.2.2", "Mailbox full"))
UNKNOWN = Outcome(OutcomeKind.FAILED, Scope.RECIPIENT, "smtp.5.1.1",
                  Reply(550, "5.1.1", "User unknown"))
BAD_LOGIN = Outcome(OutcomeKind.HELD, Scope.RELAY, "smtp.5.7.8",
                    Reply(535, "5.7.8", "Authentication credentials invalid"))
REFUSED = Outcome(OutcomeKind.DEFERRED, Scope.RELAY, "connection_refused",
                  detail="[Errno 111] Connection refused")
UNCERTAIN = Outcome(OutcomeKind.UNCERTAIN, Scope.MESSAGE, "uncertain_delivery",
                    detail="connection lost after the final dot")


def ctx(attempt: int = 1, statuses: dict[str, RecipientStatus] | None = None, *,
        held_for: timedelta = timedelta(0), accepted_at: datetime = ACCEPTED,
        on_uncertain: str = "retry") -> AttemptContext:
    return AttemptContext(attempt=attempt, accepted_at=accepted_at, held_for=held_for,
                          statuses=statuses or {A: RecipientStatus.PENDING},
                          on_uncertain=on_uncertain)


def decide(context: AttemptContext, outcomes: dict[str, Outcome], *, now: datetime = ACCEPTED,
           seed: int = 0, policy: RetryPolicy = POLICY) -> AttemptVerdict:
    return decide_attempt(context, outcomes, policy, now, random.Random(seed))


def updates(verdict: AttemptVerdict) -> dict[str, RecipientStatus]:
    return {u.address: u.status for u in verdict.recipient_updates}


def event_types(verdict: AttemptVerdict) -> list[EventType]:
    return [e.type for e in verdict.events]


@dataclass
class Message:
    """What the store keeps between attempts: enough to replay a message's life."""

    statuses: dict[str, RecipientStatus]
    attempts: int = 0
    on_uncertain: str = "retry"
    verdicts: list[AttemptVerdict] = field(default_factory=list)

    def attempt(self, outcomes: dict[str, Outcome], now: datetime, seed: int = 0,
                policy: RetryPolicy = POLICY) -> AttemptVerdict:
        pending = {r for r, s in self.statuses.items() if not s.is_final}
        assert set(outcomes) <= pending, "a worker only sends to recipients still pending"
        context = ctx(self.attempts + 1, dict(self.statuses), on_uncertain=self.on_uncertain)
        verdict = decide_attempt(context, outcomes, policy, now, random.Random(seed))
        self.statuses.update(updates(verdict))
        self.attempts += verdict.count_attempt
        self.verdicts.append(verdict)
        return verdict


# --- a message's life ------------------------------------------------------------------------

def test_451_twice_then_250_is_deferred_deferred_sent_on_the_policy_schedule():
    message = Message({A: RecipientStatus.PENDING})
    first = message.attempt({A: LATER}, ACCEPTED, seed=1)
    assert first.status is MessageStatus.DEFERRED
    assert first.due_at == ACCEPTED + POLICY.delay(1, random.Random(1))
    assert updates(first) == {A: RecipientStatus.DEFERRED}

    second = message.attempt({A: LATER}, first.due_at, seed=2)
    assert second.status is MessageStatus.DEFERRED
    assert second.due_at == first.due_at + POLICY.delay(2, random.Random(2))
    assert second.due_at - first.due_at > first.due_at - ACCEPTED  # it backs off

    third = message.attempt({A: SENT}, second.due_at, seed=3)
    assert third.status is MessageStatus.SENT
    assert third.due_at is None
    assert updates(third) == {A: RecipientStatus.SENT}
    assert [v.outcome for v in message.verdicts] == ["deferred", "deferred", "sent"]
    assert [v.events[0].attempt for v in message.verdicts] == [1, 2, 3]


def test_550_for_one_of_two_is_partially_sent_once_the_other_is_sent():
    message = Message({A: RecipientStatus.PENDING, B: RecipientStatus.PENDING})
    first = message.attempt({A: UNKNOWN, B: LATER}, ACCEPTED)
    assert first.status is MessageStatus.DEFERRED
    assert updates(first) == {A: RecipientStatus.FAILED, B: RecipientStatus.DEFERRED}

    second = message.attempt({B: SENT}, first.due_at)
    assert second.status is MessageStatus.PARTIALLY_SENT
    assert second.due_at is None
    assert message.statuses == {A: RecipientStatus.FAILED, B: RecipientStatus.SENT}
    # The message's own event (webhooks subscribe to it), after the recipients' ones.
    assert event_types(first)[-1] is not EventType.PARTIALLY_SENT
    (partly,) = [e for e in second.events if e.type is EventType.PARTIALLY_SENT]
    assert (partly.recipient, partly.attempt) == (None, 2)
    assert partly.detail.startswith("1 of 2 recipients delivered")
    assert second.events[-1] is partly


def test_550_for_one_and_250_for_the_other_in_one_attempt_is_partially_sent():
    verdict = decide(ctx(statuses={A: RecipientStatus.PENDING, B: RecipientStatus.PENDING}),
                     {A: UNKNOWN, B: SENT})
    assert verdict.status is MessageStatus.PARTIALLY_SENT
    assert verdict.outcome == "partially_sent"


@pytest.mark.parametrize("max_attempts", [1, 2, 5, 20])
def test_4xx_forever_fails_exactly_at_max_attempts(max_attempts):
    policy = RetryPolicy(max_attempts=max_attempts, max_age=timedelta(days=365))
    message = Message({A: RecipientStatus.PENDING})
    now = ACCEPTED
    for _ in range(max_attempts - 1):
        verdict = message.attempt({A: FULL}, now, policy=policy)
        assert verdict.status is MessageStatus.DEFERRED
        assert updates(verdict) == {A: RecipientStatus.DEFERRED}
        assert EventType.FAILED not in event_types(verdict)
        now = verdict.due_at
    last = message.attempt({A: FULL}, now, policy=policy)
    assert message.attempts == max_attempts
    assert last.status is MessageStatus.FAILED
    assert last.due_at is None
    assert updates(last) == {A: RecipientStatus.FAILED}
    (failed,) = [e for e in last.events if e.type is EventType.FAILED]
    assert failed.attempt == max_attempts
    assert failed.recipient == A
    assert "max_attempts" in failed.detail
    assert f"{max_attempts} attempts" in failed.detail
    assert failed.guidance == "max_attempts_reached"
    assert failed.reply_code == 452  # the last thing the server said is kept
    (update,) = last.recipient_updates
    assert update.guidance == "max_attempts_reached"
    assert update.reply_code == 452
    assert update.enhanced_code == "4.2.2"


def test_4xx_past_max_age_fails_naming_max_age():
    verdict = decide(ctx(3), {A: LATER}, now=ACCEPTED + POLICY.max_age + timedelta(seconds=1))
    assert verdict.status is MessageStatus.FAILED
    (failed,) = [e for e in verdict.events if e.type is EventType.FAILED]
    assert "max_age" in failed.detail
    assert failed.guidance == "max_age_reached"


def test_time_held_keeps_an_old_message_alive():
    now = ACCEPTED + POLICY.max_age + timedelta(hours=1)
    verdict = decide(ctx(3, held_for=timedelta(hours=2)), {A: LATER}, now=now)
    assert verdict.status is MessageStatus.DEFERRED
    assert now < verdict.due_at <= ACCEPTED + POLICY.max_age + timedelta(hours=2)


def test_retry_after_of_the_slowest_recipient_sets_the_due_time():
    slow = Outcome(OutcomeKind.DEFERRED, Scope.RECIPIENT, "smtp.4.7.1",
                   Reply(450, "4.7.1", "slow down"), retry_after=timedelta(hours=2))
    verdict = decide(ctx(statuses={A: RecipientStatus.PENDING, B: RecipientStatus.PENDING}),
                     {A: LATER, B: slow})
    assert verdict.due_at == ACCEPTED + timedelta(hours=2)


# --- held ------------------------------------------------------------------------------------

def test_auth_failure_holds_does_not_count_and_raises_an_alert():
    verdict = decide(ctx(2), {A: BAD_LOGIN})
    assert verdict.status is MessageStatus.HELD
    assert verdict.count_attempt is False
    assert verdict.due_at is None
    assert verdict.hold_reason
    assert updates(verdict) == {A: RecipientStatus.PENDING}
    assert event_types(verdict) == [EventType.ATTEMPT, EventType.HELD, EventType.ALERT]
    held, alert = verdict.events[1:]
    assert held.recipient == A
    assert held.reply_code == 535
    assert alert.recipient is None
    assert alert.attempt == 2
    assert alert.reply_code == 535
    assert alert.enhanced_code == "5.7.8"
    assert alert.guidance == "smtp.5.7.8"
    assert "held, not failed" in alert.detail


@pytest.mark.parametrize("attempt", [5, 6, 100])
def test_held_never_fails_even_past_max_attempts(attempt):
    verdict = decide(ctx(attempt), {A: BAD_LOGIN},
                     now=ACCEPTED + POLICY.max_age + timedelta(days=30))
    assert verdict.status is MessageStatus.HELD
    assert EventType.FAILED not in event_types(verdict)


def test_one_alert_per_attempt_however_many_recipients_are_held():
    verdict = decide(ctx(statuses={A: RecipientStatus.PENDING, B: RecipientStatus.PENDING}),
                     {A: BAD_LOGIN, B: BAD_LOGIN})
    assert event_types(verdict).count(EventType.ALERT) == 1
    assert event_types(verdict).count(EventType.HELD) == 2


def test_a_held_relay_holds_the_message_while_another_relay_delivers():
    verdict = decide(ctx(statuses={A: RecipientStatus.PENDING, B: RecipientStatus.PENDING}),
                     {A: SENT, B: BAD_LOGIN})
    assert verdict.status is MessageStatus.HELD
    assert updates(verdict) == {A: RecipientStatus.SENT, B: RecipientStatus.PENDING}
    assert verdict.count_attempt is False


def test_a_try_the_whole_relay_failed_says_it_is_not_counted():
    down = replace(REFUSED, relay_wide=True)
    verdict = decide(ctx(3), {A: down})
    assert verdict.status is MessageStatus.DEFERRED and verdict.count_attempt is False
    attempt = verdict.events[0]
    assert attempt.type is EventType.ATTEMPT and attempt.attempt == 3
    assert attempt.detail == f"1 deferred; {NOT_COUNTED}"
    assert "max_attempts" in NOT_COUNTED
    counted = decide(ctx(3), {A: LATER})
    assert counted.count_attempt is True
    assert counted.events[0].detail == "1 deferred"


def test_a_relay_scope_deferral_defers():
    verdict = decide(ctx(), {A: REFUSED})
    assert verdict.status is MessageStatus.DEFERRED
    assert verdict.due_at is not None
    (update,) = verdict.recipient_updates
    assert update.reply is not None and "Connection refused" in update.reply
    assert update.reply_code is None
    assert update.guidance == "connection_refused"


# --- uncertain -------------------------------------------------------------------------------

def test_uncertain_with_retry_is_deferred_with_an_uncertain_event():
    verdict = decide(ctx(2, on_uncertain="retry"), {A: UNCERTAIN}, seed=4)
    assert verdict.status is MessageStatus.DEFERRED
    assert verdict.due_at == ACCEPTED + POLICY.delay(2, random.Random(4))
    assert verdict.count_attempt is True
    assert updates(verdict) == {A: RecipientStatus.DEFERRED}
    assert event_types(verdict) == [EventType.ATTEMPT, EventType.UNCERTAIN]
    uncertain = verdict.events[1]
    assert uncertain.recipient == A
    assert uncertain.attempt == 2
    assert uncertain.guidance == "uncertain_delivery"
    assert "next attempt at" in uncertain.detail


def test_uncertain_with_hold_is_held_for_an_operator():
    verdict = decide(ctx(on_uncertain="hold"), {A: UNCERTAIN})
    assert verdict.status is MessageStatus.HELD
    assert verdict.due_at is None
    assert "uncertain" in verdict.hold_reason
    assert EventType.UNCERTAIN in event_types(verdict)
    assert EventType.ALERT not in event_types(verdict)


def test_uncertain_on_the_last_attempt_still_records_the_uncertain_event():
    """Duplicates a relay can see are bounded by the count of `uncertain` events."""
    verdict = decide(ctx(POLICY.max_attempts), {A: UNCERTAIN})
    assert verdict.status is MessageStatus.FAILED
    assert event_types(verdict) == [EventType.ATTEMPT, EventType.UNCERTAIN, EventType.FAILED]


def test_uncertain_for_one_recipient_while_the_other_was_refused():
    verdict = decide(ctx(statuses={A: RecipientStatus.PENDING, B: RecipientStatus.PENDING}),
                     {A: UNKNOWN, B: UNCERTAIN})
    assert verdict.status is MessageStatus.DEFERRED
    assert updates(verdict) == {A: RecipientStatus.FAILED, B: RecipientStatus.DEFERRED}


# --- events ----------------------------------------------------------------------------------

def test_events_start_with_an_attempt_summary_and_carry_attempt_and_recipient():
    verdict = decide(ctx(3, statuses={A: RecipientStatus.PENDING, B: RecipientStatus.PENDING}),
                     {A: UNKNOWN, B: FULL})
    first, *rest = verdict.events
    assert first.type is EventType.ATTEMPT
    assert first.attempt == 3
    assert first.recipient is None
    assert first.detail == "1 deferred, 1 failed"
    assert {(e.type, e.recipient) for e in rest} == {(EventType.FAILED, A),
                                                     (EventType.DEFERRED, B)}
    for event in verdict.events:
        assert event.at == ACCEPTED
        assert event.attempt == 3
    failed = next(e for e in rest if e.recipient == A)
    assert (failed.reply_code, failed.enhanced_code, failed.reply, failed.guidance) == (
        550, "5.1.1", "User unknown", "smtp.5.1.1")
    deferred = next(e for e in rest if e.recipient == B)
    assert f"next attempt at {verdict.due_at.isoformat()}" in deferred.detail


def test_sent_message_events():
    verdict = decide(ctx(), {A: SENT})
    assert verdict.status is MessageStatus.SENT
    assert verdict.count_attempt is True
    assert verdict.hold_reason == ""
    assert event_types(verdict) == [EventType.ATTEMPT, EventType.SENT]
    assert verdict.events[1].reply == "queued"


def test_recipients_already_final_keep_the_message_open_only_if_someone_is_pending():
    statuses = {A: RecipientStatus.SENT, B: RecipientStatus.DEFERRED}
    assert decide(ctx(2, statuses), {B: UNKNOWN}).status is MessageStatus.PARTIALLY_SENT
    assert decide(ctx(2, statuses), {B: SENT}).status is MessageStatus.SENT
    assert decide(ctx(2, statuses), {B: LATER}).status is MessageStatus.DEFERRED


@pytest.mark.parametrize(("statuses", "expected"), [
    ([RecipientStatus.SENT], MessageStatus.SENT),
    ([RecipientStatus.SENT, RecipientStatus.SENT], MessageStatus.SENT),
    ([RecipientStatus.FAILED], MessageStatus.FAILED),
    ([RecipientStatus.FAILED, RecipientStatus.FAILED], MessageStatus.FAILED),
    ([RecipientStatus.SENT, RecipientStatus.FAILED], MessageStatus.PARTIALLY_SENT),
])
def test_final_status(statuses, expected):
    assert final_status(statuses) is expected
    assert final_status(iter(statuses)) is expected


# --- properties ------------------------------------------------------------------------------

_OUTCOMES = st.sampled_from([SENT, LATER, FULL, UNKNOWN, BAD_LOGIN, REFUSED, UNCERTAIN])
_RECIPIENTS = [f"r{i}@example.com" for i in range(4)]


@given(
    outcomes=st.lists(_OUTCOMES, min_size=1, max_size=4),
    attempt=st.integers(1, 8),
    age=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4)),
    on_uncertain=st.sampled_from(["retry", "hold"]),
    seed=st.integers(0, 1000),
)
def test_verdict_invariants(outcomes, attempt, age, on_uncertain, seed):
    by_rcpt = dict(zip(_RECIPIENTS, outcomes, strict=False))
    context = ctx(attempt, dict.fromkeys(by_rcpt, RecipientStatus.PENDING),
                  on_uncertain=on_uncertain)
    now = ACCEPTED + age
    verdict = decide(context, by_rcpt, now=now, seed=seed)
    held = any(o.kind is OutcomeKind.HELD for o in outcomes)
    exhausted = attempt >= POLICY.max_attempts or now >= ACCEPTED + POLICY.max_age

    assert verdict.events[0].type is EventType.ATTEMPT
    assert all(e.attempt == attempt for e in verdict.events)
    assert {u.address for u in verdict.recipient_updates} == set(by_rcpt)
    assert verdict.count_attempt is not held
    assert verdict.outcome == verdict.status.value
    assert (verdict.due_at is not None) == (verdict.status is MessageStatus.DEFERRED)
    if verdict.due_at is not None:
        assert now <= verdict.due_at <= ACCEPTED + POLICY.max_age
    assert (EventType.ALERT in event_types(verdict)) is held
    for update in verdict.recipient_updates:
        outcome = by_rcpt[update.address]
        if outcome.kind is OutcomeKind.HELD:
            assert update.status is RecipientStatus.PENDING  # held never fails
        if outcome.kind in (OutcomeKind.DEFERRED, OutcomeKind.UNCERTAIN) and not exhausted:
            assert update.status is RecipientStatus.DEFERRED  # 4xx never fails early
        if outcome.kind is OutcomeKind.SENT:
            assert update.status is RecipientStatus.SENT
    for address, outcome in by_rcpt.items():
        mine = [e.type for e in verdict.events if e.recipient == address]
        assert mine.count(EventType.UNCERTAIN) == (outcome.kind is OutcomeKind.UNCERTAIN)
    if held and not all(s.is_final for s in updates(verdict).values()):
        assert verdict.status is MessageStatus.HELD
    if all(s.is_final for s in updates(verdict).values()):
        assert verdict.status.is_final


# --- in steps (issue 17: a big message's decision leaves the event loop turns) ----------------


def test_a_big_decision_pauses_every_step_and_equals_the_whole() -> None:
    """1,000 recipients (one failed, one sent, the others deferred): paused once per
    STEP, and the verdict is the one `decide_attempt` gives in one go."""
    recipients = [f"r{n}@example.org" for n in range(1000)]
    outcomes = {r: LATER for r in recipients} | {recipients[7]: UNKNOWN, recipients[500]: SENT}
    context = ctx(statuses=dict.fromkeys(recipients, RecipientStatus.PENDING))
    steps = decide_in_steps(context, outcomes, POLICY, ACCEPTED, random.Random(3))
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            stepped = done.value
            break
        pauses += 1
    assert pauses == 1000 // STEP
    assert stepped == decide_attempt(context, outcomes, POLICY, ACCEPTED, random.Random(3))
    assert [u.address for u in stepped.recipient_updates] == recipients
    assert stepped.status is MessageStatus.DEFERRED
