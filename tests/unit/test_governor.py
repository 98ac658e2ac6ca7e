"""core.governor: back-off, half-open probe, throttle and recovery of one relay, and
which sessions say what about their relay. Every sentence of the guidance that
promises the governor's behaviour is checked here against the policy."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core import guidance
from outbox.core.classify import classify
from outbox.core.decide import AttemptContext, decide_attempt
from outbox.core.governor import (
    GovernorPolicy,
    GovernorState,
    Signal,
    State,
    relay_wide,
    signal_of,
)
from outbox.core.model import OutcomeKind, RecipientStatus, Reply
from outbox.core.report import Condition, DeliveryReport, SessionFailure, Stage
from outbox.core.retry import RetryPolicy

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
POLICY = GovernorPolicy(max_connections=8, first_backoff=timedelta(seconds=10),
                        max_backoff=timedelta(minutes=10), jitter=0.0)
OPEN = GovernorState("r")
A, B = "a@example.test", "b@example.test"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rng() -> random.Random:
    return random.Random(7)


def down(health: GovernorState, seconds: float, *, probe: bool = False) -> GovernorState:
    return POLICY.after(health, Signal.DOWN, at(seconds), rng(), probe=probe, reason="refused",
                        key="connection_refused")


def report(*, failure: SessionFailure | None = None, mail: Reply | None = None,
           rcpt: dict[str, Reply] | None = None, data: Reply | None = None) -> DeliveryReport:
    return DeliveryReport("r", (A, B), mail_reply=mail, rcpt_replies=rcpt or {},
                          data_reply=data, failure=failure, data_sent=data is not None)


def said(r: DeliveryReport) -> Signal:
    return signal_of(r)[0]


# --- back-off and probe ------------------------------------------------------------------

def test_an_open_relay_admits_every_session() -> None:
    assert OPEN.state(at(0)) is State.OPEN
    admission = POLICY.admit(OPEN, at(0))
    assert admission.go and not admission.probe


def test_a_relay_that_fails_backs_off_and_its_mail_waits() -> None:
    health = down(OPEN, 0)
    assert (health.failures, health.backoff_until) == (1, at(10))
    assert health.state(at(5)) is State.BACKING_OFF
    admission = POLICY.admit(health, at(5))
    assert not admission.go and admission.wait_until == at(10)
    assert "backing off until" in health.describe(at(5)) and "refused" in health.describe(at(5))


def test_sessions_already_out_do_not_stretch_the_back_off() -> None:
    health = down(OPEN, 0)
    assert down(health, 0.5) == health  # nine more refusals from sessions out at the time


def test_after_the_back_off_one_probe_goes_and_the_others_wait_for_it() -> None:
    health = down(OPEN, 0)
    first = POLICY.admit(health, at(10))
    assert first.go and first.probe and health.state(at(10)) is State.PROBING
    probing = POLICY.claim_probe(health, at(10))
    other = POLICY.admit(probing, at(11))
    # They look again soon (the probe answers in a moment), not after the whole window.
    assert not other.go and other.wait_until == at(11) + POLICY.first_backoff
    late = POLICY.admit(probing, at(10) + POLICY.probe_window - timedelta(seconds=1))
    assert not late.go and late.wait_until == at(10) + POLICY.probe_window
    # A probe that never reports is forgotten: the next comer probes.
    assert POLICY.admit(probing, at(10) + POLICY.probe_window).probe


def test_a_failed_probe_doubles_the_back_off_up_to_the_maximum() -> None:
    health, now, waits = OPEN, 0.0, []
    for _ in range(9):
        health = down(POLICY.claim_probe(health, at(now)), now, probe=True)
        assert health.backoff_until is not None
        waits.append((health.backoff_until - at(now)).total_seconds())
        now = (health.backoff_until - T0).total_seconds()
    assert waits == [10, 20, 40, 80, 160, 320, 600, 600, 600]
    assert health.failures == 9


def test_a_refusal_that_is_not_the_probe_during_probing_changes_nothing() -> None:
    probing = POLICY.claim_probe(down(OPEN, 0), at(10))
    assert down(probing, 11) == probing


def test_a_session_that_gets_through_opens_the_relay() -> None:
    probing = POLICY.claim_probe(down(OPEN, 0), at(10))
    opened = POLICY.after(probing, Signal.OK, at(11), rng(), probe=True)
    assert opened.state(at(11)) is State.OPEN and opened == OPEN


@given(st.integers(min_value=1, max_value=60), st.floats(min_value=0, max_value=0.5))
def test_back_off_never_exceeds_the_maximum_plus_jitter(failures: int, jitter: float) -> None:
    policy = replace(POLICY, jitter=jitter)
    wait = policy.backoff(failures, random.Random(failures))
    assert POLICY.first_backoff <= wait <= policy.max_backoff * (1 + jitter)


# --- throttle ----------------------------------------------------------------------------

def throttle(health: GovernorState, seconds: float) -> GovernorState:
    return POLICY.after(health, Signal.THROTTLED, at(seconds), rng(), reason="421 4.7.0 slow",
                        key="smtp.4.7.0")


def test_slow_down_halves_the_concurrency_to_one_at_least() -> None:
    limits = []
    health = OPEN
    for n in range(5):
        health = throttle(health, n)
        limits.append(health.limit)
    assert limits == [4, 2, 1, 1, 1]
    assert health.state(at(5)) is State.THROTTLED
    assert POLICY.spacing_for(health) == POLICY.spacing > timedelta(0)
    assert POLICY.spacing_for(OPEN) == timedelta(0)
    assert health.describe(at(5)).startswith("throttled to 1 session")


def test_a_throttled_relay_recovers_one_session_per_calm_period() -> None:
    health = throttle(throttle(OPEN, 0), 0)  # 2 of 8
    assert POLICY.after(health, Signal.OK, at(10), rng()).limit == 2  # not calm long enough
    now, limits = 0.0, []
    while health.limit:
        now += POLICY.recover_every.total_seconds()
        health = POLICY.after(health, Signal.OK, at(now), rng())
        limits.append(health.limit)
    assert limits == [3, 4, 5, 6, 7, 0]
    assert health.state(at(now)) is State.OPEN and health.reason == ""


# --- what sessions say -------------------------------------------------------------------

@pytest.mark.parametrize("failure", [
    SessionFailure(Stage.CONNECT, condition=Condition.CONNECTION_REFUSED),
    SessionFailure(Stage.CONNECT, condition=Condition.CONNECTION_TIMEOUT),
    SessionFailure(Stage.GREETING, reply=Reply(421, "4.7.0", "Too many connections")),
    SessionFailure(Stage.STARTTLS, condition=Condition.TLS_HANDSHAKE_FAILED),
    SessionFailure(Stage.AUTH, reply=Reply(454, "4.7.0", "Temporary authentication failure")),
    SessionFailure(Stage.AUTH, reply=Reply(432, "4.7.12", "A password transition is needed")),
    SessionFailure(Stage.AUTH, condition=Condition.TOKEN_ENDPOINT_UNAVAILABLE),
])
def test_a_relay_wide_failure_is_down_and_spends_no_attempt(failure: SessionFailure) -> None:
    r = report(failure=failure)
    outcomes = classify(r)
    assert said(r) is Signal.DOWN
    assert all(relay_wide(o) for o in outcomes.values())


@pytest.mark.parametrize("failure", [
    SessionFailure(Stage.AUTH, reply=Reply(535, "5.7.8", "Authentication credentials invalid")),
    SessionFailure(Stage.GREETING, reply=Reply(554, "5.7.1", "You are not welcome")),
])
def test_a_refusal_for_good_holds_instead_and_is_not_a_back_off(failure: SessionFailure) -> None:
    r = report(failure=failure)
    assert said(r) is Signal.OK
    assert all(o.kind is OutcomeKind.HELD and not relay_wide(o) for o in classify(r).values())


@pytest.mark.parametrize("failure", [
    SessionFailure(Stage.CONNECT, condition=Condition.CONNECTION_REFUSED),
    SessionFailure(Stage.GREETING, reply=Reply(421, "4.7.0", "Too many connections")),
    SessionFailure(Stage.AUTH, reply=Reply(535, "5.7.8", "Authentication credentials invalid")),
])
def test_a_setup_failure_says_what_classifying_its_recipients_would(
        failure: SessionFailure) -> None:
    # signal_of does not classify every recipient: they all share the session's outcome.
    r = report(failure=failure)
    first = next(iter(classify(r).values()))
    signal, reason, key = signal_of(r)
    assert (signal is Signal.DOWN) == first.relay_wide
    if signal is Signal.DOWN:
        said_reason = str(first.reply) if first.reply else first.detail or first.guidance
        assert key == first.guidance and reason == said_reason
    nobody = DeliveryReport("r", (), failure=failure)
    assert signal_of(nobody) == (Signal.OK, "", "")


@pytest.mark.parametrize("r", [
    report(mail=Reply(421, "4.7.0", "Slow down")),
    report(mail=Reply(250, "2.1.0", "ok"), rcpt={A: Reply(450, "4.7.0", "Rate limited")}),
    report(mail=Reply(250, "2.1.0", "ok"), rcpt={A: Reply(250, "2.1.5", "ok")},
           data=Reply(421, "4.3.2", "Closing")),
])
def test_slow_down_inside_a_session_throttles(r: DeliveryReport) -> None:
    assert said(r) is Signal.THROTTLED
    assert not any(relay_wide(o) for o in classify(r).values())


def test_a_normal_session_is_ok() -> None:
    r = report(mail=Reply(250, "2.1.0", "ok"), rcpt={A: Reply(250, "2.1.5", "ok"),
                                                    B: Reply(550, "5.1.1", "unknown")},
               data=Reply(250, "2.0.0", "queued"))
    assert said(r) is Signal.OK


# --- the message's side: no attempt spent, max_age still bounds the wait ------------------

RETRY = RetryPolicy(first_delay=timedelta(seconds=60), max_attempts=3,
                    max_age=timedelta(hours=1))


def ctx(attempt: int = 1) -> AttemptContext:
    return AttemptContext(attempt=attempt, accepted_at=T0, held_for=timedelta(0),
                          statuses={A: RecipientStatus.PENDING, B: RecipientStatus.PENDING})


def backing_off(retry_after: timedelta) -> DeliveryReport:
    return report(failure=SessionFailure(Stage.CONNECT, condition=Condition.RELAY_BACKING_OFF,
                                         retry_after=retry_after))


def test_mail_of_a_relay_that_is_down_waits_for_its_back_off_without_an_attempt() -> None:
    verdict = decide_attempt(ctx(attempt=3), classify(backing_off(timedelta(seconds=80))),
                             RETRY, at(100), rng())
    assert not verdict.count_attempt
    assert verdict.status.value == "deferred" and verdict.due_at is not None
    assert at(180) <= verdict.due_at <= at(100 + 80 * 1.2)  # spread, never before the probe


def test_max_attempts_does_not_end_a_relay_wide_wait_but_max_age_does() -> None:
    outcomes = classify(backing_off(timedelta(minutes=10)))
    still = decide_attempt(ctx(attempt=50), outcomes, RETRY, at(3300), rng())
    assert still.status.value == "deferred" and still.due_at == at(3600)  # capped at max_age
    over = decide_attempt(ctx(attempt=50), outcomes, RETRY, at(3600), rng())
    assert over.status.value == "failed" and over.recipient_updates[0].guidance == (
        "max_age_reached")


def test_a_message_refused_at_mail_still_spends_its_attempt() -> None:
    r = report(mail=Reply(451, "4.3.0", "Try later"))
    assert decide_attempt(ctx(), classify(r), RETRY, at(0), rng()).count_attempt


# --- the guidance's promises are the policy's behaviour ------------------------------------

@pytest.mark.parametrize("key, reply", [("smtp.421", Reply(421, None, "Closing")),
                                        ("smtp.4.7.0", Reply(450, "4.7.0", "Slow down"))])
def test_guidance_that_says_outbox_slows_down_is_true(key: str, reply: Reply) -> None:
    assert "slows down for this relay" in guidance.describe(key).next_step
    r = report(mail=Reply(250, "2.1.0", "ok"), rcpt={A: reply, B: reply})
    signal, _, said_key = signal_of(r)
    assert signal is Signal.THROTTLED and said_key == key
    assert throttle(OPEN, 0).limit < POLICY.max_connections  # fewer sessions at once
    assert POLICY.spacing_for(throttle(OPEN, 0)) > timedelta(0)  # and spaced


def test_guidance_for_a_relay_backing_off_matches_the_policy() -> None:
    entry = guidance.describe(Condition.RELAY_BACKING_OFF.value)
    assert "longer after each failure" in entry.explanation
    assert "one session first" in entry.explanation and "no attempts" in entry.explanation
    probing = POLICY.claim_probe(down(OPEN, 0), at(10))
    assert not POLICY.admit(probing, at(10.5)).go  # one session first
    assert down(POLICY.claim_probe(down(OPEN, 0), at(10)), 10, probe=True).failures == 2
    assert not decide_attempt(ctx(), classify(backing_off(timedelta(seconds=5))), RETRY,
                              at(0), rng()).count_attempt
