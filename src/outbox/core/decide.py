"""From per-recipient outcomes of one attempt to the message's next state.

`decide_attempt` is the whole policy of what an attempt means: which
recipients are done, whether and when to try again, what to record as
events. The worker only persists its verdict.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from outbox.core.governor import relay_wide, throttled
from outbox.core.guidance_outbox import GAVE_UP_UNCERTAIN
from outbox.core.model import (
    Event,
    EventType,
    MessageStatus,
    Outcome,
    OutcomeKind,
    RecipientStatus,
    RecipientUpdate,
    RetryDecision,
    Scope,
)
from outbox.core.report import Condition
from outbox.core.retry import RetryPolicy

_FINAL_KIND_STATUS = {OutcomeKind.SENT: RecipientStatus.SENT,
                      OutcomeKind.FAILED: RecipientStatus.FAILED}
_KIND_EVENT = {
    OutcomeKind.SENT: EventType.SENT,
    OutcomeKind.FAILED: EventType.FAILED,
    OutcomeKind.DEFERRED: EventType.DEFERRED,
    OutcomeKind.UNCERTAIN: EventType.UNCERTAIN,
    OutcomeKind.HELD: EventType.HELD,
}


@dataclass(frozen=True, slots=True)
class AttemptContext:
    attempt: int  # this attempt's number, 1-based
    accepted_at: datetime
    held_for: timedelta
    statuses: Mapping[str, RecipientStatus]  # every recipient, before this attempt
    on_uncertain: str = "retry"  # "retry" | "hold"


@dataclass(frozen=True, slots=True)
class AttemptVerdict:
    status: MessageStatus
    due_at: datetime | None
    recipient_updates: tuple[RecipientUpdate, ...]
    events: tuple[Event, ...]
    count_attempt: bool
    hold_reason: str
    outcome: str
    # Held because of the relay (credentials, trust): released with the relay,
    # unlike mail held by policy or after an uncertain delivery.
    held_for_relay: bool = False


def decide_attempt(
    ctx: AttemptContext,
    outcomes: Mapping[str, Outcome],
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random,
) -> AttemptVerdict:
    """The message's new state after one attempt over `outcomes`."""
    steps = decide_in_steps(ctx, outcomes, policy, now, rng)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


STEP = 250  # recipients decided between two pauses of `decide_in_steps`


def decide_in_steps(
    ctx: AttemptContext,
    outcomes: Mapping[str, Outcome],
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random,
) -> Generator[None, None, AttemptVerdict]:
    """`decide_attempt`, pausing (a bare `yield`) after every STEP recipients, so that a
    caller on an event loop lets other requests run in between: 1,000 recipients
    take several milliseconds (issue 17). Its return value is the verdict."""
    held = [o for o in outcomes.values() if o.kind is OutcomeKind.HELD]
    not_counted = _not_counted(outcomes)
    retry = _retry_decision(ctx, outcomes, policy, now, rng)
    # One text for every recipient: a relay-wide deferral gives 1,000 the same.
    next_attempt = f"next attempt at {retry.retry_at.isoformat()}" if retry.retry_at else ""
    updates: dict[str, RecipientUpdate] = {}
    events: list[Event] = []
    for n, (addr, outcome) in enumerate(outcomes.items(), 1):
        updates[addr] = _recipient_update(addr, outcome, retry)
        events.extend(_recipient_events(ctx, now, addr, outcome, retry, next_attempt))
        if n % STEP == 0:
            yield
    statuses = {**ctx.statuses, **{u.address: u.status for u in updates.values()}}
    status, hold_reason = _message_status(ctx, statuses, outcomes, held[0] if held else None)
    if held and held[0].scope is Scope.RELAY:
        events.append(_alert_event(ctx, now, held[0]))
    if status is MessageStatus.PARTIALLY_SENT:
        events.append(_partly_sent_event(ctx, now, statuses))
    due_at = retry.retry_at if status is MessageStatus.DEFERRED else None
    return AttemptVerdict(
        status=status,
        due_at=due_at,
        recipient_updates=tuple(updates.values()),
        events=(Event(now, EventType.ATTEMPT, ctx.attempt,
                      detail=_join(_summary(outcomes), not_counted)), *events),
        count_attempt=not (held or not_counted),
        hold_reason=hold_reason,
        outcome=status.value,
        held_for_relay=(status is MessageStatus.HELD and bool(held)
                        and held[0].scope is Scope.RELAY),
    )


def _retry_decision(ctx: AttemptContext, outcomes: Mapping[str, Outcome],
                    policy: RetryPolicy, now: datetime, rng: random.Random) -> RetryDecision:
    """One decision for every retryable recipient: they share the attempt count."""
    retryable = [o for o in outcomes.values()
                 if o.kind in (OutcomeKind.DEFERRED, OutcomeKind.UNCERTAIN)]
    if not retryable:
        return RetryDecision(False, None)
    if all(relay_wide(o) for o in retryable):
        slowest_relay = max(o.retry_after or timedelta(0) for o in retryable)
        return policy.wait_for_relay(slowest_relay or None, ctx.accepted_at, now, rng,
                                     ctx.held_for)
    if all(relay_wide(o) or throttled(o) for o in retryable):
        return policy.wait_for_relay(_throttled_wait(ctx, retryable, policy, now),
                                     ctx.accepted_at, now, rng, ctx.held_for)
    slowest = max(retryable, key=lambda o: o.retry_after or timedelta(0))
    return policy.decide(slowest, ctx.attempt, ctx.accepted_at, now, rng, ctx.held_for)


def _throttled_wait(ctx: AttemptContext, retryable: list[Outcome], policy: RetryPolicy,
                    now: datetime) -> timedelta:
    """No attempt is spent, so the attempt count cannot space the tries out: the wait
    grows with the time the message has waited already (doubling, like `delay`), from
    `first_delay` up to `max_delay`, and is never shorter than the relay asked."""
    waited = now - ctx.accepted_at - ctx.held_for
    wait = min(max(waited, policy.first_delay), policy.max_delay)
    return max([wait, *(o.retry_after for o in retryable if o.retry_after)])


def _not_counted(outcomes: Mapping[str, Outcome]) -> str:
    """Why this attempt is not counted against max_attempts, or "" when it is: every
    recipient left to retry waits for its relay (down, or saying "slow down")."""
    retryable = [o for o in outcomes.values()
                 if o.kind in (OutcomeKind.DEFERRED, OutcomeKind.UNCERTAIN)]
    if not retryable or not all(relay_wide(o) or throttled(o) for o in retryable):
        return ""
    if all(o.guidance == Condition.RELAY_SESSIONS_BUSY.value for o in retryable):
        return BUSY_NOT_COUNTED
    return NOT_COUNTED if all(relay_wide(o) for o in retryable) else THROTTLED_NOT_COUNTED


def _recipient_update(address: str, outcome: Outcome, retry: RetryDecision) -> RecipientUpdate:
    reply = outcome.reply
    status = _FINAL_KIND_STATUS.get(outcome.kind)
    if status is None:
        is_retry = outcome.kind in (OutcomeKind.DEFERRED, OutcomeKind.UNCERTAIN)
        status = RecipientStatus.FAILED if is_retry and retry.give_up else (
            RecipientStatus.DEFERRED if is_retry else RecipientStatus.PENDING)
    gave_up = status is RecipientStatus.FAILED and outcome.kind not in _FINAL_KIND_STATUS
    reason, key = _gave_up(retry, outcome) if gave_up else ("", outcome.guidance)
    return RecipientUpdate(
        address=address,
        status=status,
        reply_code=reply.code if reply else None,
        enhanced_code=reply.enhanced if reply else None,
        # No reply to show: the last try's detail ("... waits without spending attempts")
        # would contradict the final status, so the reason it ended stands in for it.
        reply=reply.text if reply else (reason or outcome.detail or None),
        guidance=key,
    )


def _gave_up(retry: RetryDecision, outcome: Outcome) -> tuple[str, str]:
    """Why the policy gave up on `outcome`, and the guidance key. When the try that ended
    it was uncertain, the relay probably has the message: say so, since "retry the
    message" would send another copy."""
    if outcome.kind is not OutcomeKind.UNCERTAIN:
        return retry.reason, retry.guidance
    return _join(retry.reason, GAVE_UP_UNCERTAIN_DETAIL), GAVE_UP_UNCERTAIN


def _recipient_events(ctx: AttemptContext, now: datetime, address: str, outcome: Outcome,
                      retry: RetryDecision, next_attempt: str) -> list[Event]:
    """The recipient's event for this attempt; an uncertain outcome always leaves an
    `uncertain` event, even when the policy then gives up, since duplicates are
    bounded by the count of those events."""
    event = _recipient_event(ctx, now, address, outcome, retry, next_attempt)
    if outcome.kind is OutcomeKind.UNCERTAIN and event.type is not EventType.UNCERTAIN:
        uncertain = replace(event, type=EventType.UNCERTAIN, guidance=outcome.guidance,
                            detail=outcome.detail)
        return [uncertain, event]
    return [event]


def _recipient_event(ctx: AttemptContext, now: datetime, address: str, outcome: Outcome,
                     retry: RetryDecision, next_attempt: str) -> Event:
    reply = outcome.reply
    event_type = _KIND_EVENT[outcome.kind]
    detail = outcome.detail
    key = outcome.guidance
    if outcome.kind in (OutcomeKind.DEFERRED, OutcomeKind.UNCERTAIN):
        if retry.give_up:
            event_type = EventType.FAILED
            detail, key = _gave_up(retry, outcome)
        elif next_attempt:
            detail = _join(detail, next_attempt)
    return Event(
        at=now,
        type=event_type,
        attempt=ctx.attempt,
        recipient=address,
        reply_code=reply.code if reply else None,
        enhanced_code=reply.enhanced if reply else None,
        reply=reply.text if reply else None,
        guidance=key,
        detail=detail,
    )


def _message_status(ctx: AttemptContext, statuses: Mapping[str, RecipientStatus],
                    outcomes: Mapping[str, Outcome],
                    held: Outcome | None) -> tuple[MessageStatus, str]:
    if all(s.is_final for s in statuses.values()):
        return final_status(statuses.values()), ""
    if held is not None and held.scope is not Scope.RELAY:  # the message itself: a damaged file
        return MessageStatus.HELD, held.detail or held.guidance
    if held is not None:
        return MessageStatus.HELD, "the relay needs attention"
    uncertain = any(o.kind is OutcomeKind.UNCERTAIN for o in outcomes.values())
    if uncertain and ctx.on_uncertain == "hold":
        return MessageStatus.HELD, "delivery uncertain: release to resend, or cancel"
    return MessageStatus.DEFERRED, ""


def final_status(statuses: Iterable[RecipientStatus]) -> MessageStatus:
    """Sent, failed or partially sent, once every recipient is final."""
    values = list(statuses)
    if all(s is RecipientStatus.SENT for s in values):
        return MessageStatus.SENT
    if all(s is RecipientStatus.FAILED for s in values):
        return MessageStatus.FAILED
    return MessageStatus.PARTIALLY_SENT


def _alert_event(ctx: AttemptContext, now: datetime, outcome: Outcome) -> Event:
    reply = outcome.reply
    return Event(now, EventType.ALERT, ctx.attempt, reply_code=reply.code if reply else None,
                 enhanced_code=reply.enhanced if reply else None,
                 reply=reply.text if reply else None, guidance=outcome.guidance,
                 detail="relay needs attention; its mail is held, not failed")


def _partly_sent_event(ctx: AttemptContext, now: datetime,
                       statuses: Mapping[str, RecipientStatus]) -> Event:
    """The message's own event once it ended with some recipients sent, some failed."""
    sent = sum(1 for s in statuses.values() if s is RecipientStatus.SENT)
    return Event(now, EventType.PARTIALLY_SENT, ctx.attempt,
                 detail=f"{sent} of {len(statuses)} recipients delivered; the others failed")


# The attempt event of a try that only a failure of the whole relay stopped (refused,
# timed out, TLS, a 4xx to AUTH, "421"): the try is not counted, so the next one carries
# the same attempt number, and the timeline says why.
NOT_COUNTED = ("the relay failed, not the message: not counted against [retry] "
               "max_attempts (it waits for the relay, up to [retry] max_age)")
GAVE_UP_UNCERTAIN_DETAIL = ("the last try lost the connection after the whole message was "
                            "sent: the relay probably has it, once for each `uncertain` event")

# ... and of a try the relay answered with "slow down" (421, 4.7.x): the governor paces
# the relay, and its mail waits without spending attempts (SPEC F3).
THROTTLED_NOT_COUNTED = ("the relay asked Outbox to slow down: not counted against [retry] "
                         "max_attempts (its mail waits, up to [retry] max_age)")


# ... and of a try that waited too long for one of the relay's sessions (delivery/lane.py):
# the relay did not fail, and its mail goes back to wait for its turn.
BUSY_NOT_COUNTED = ("the relay's sessions were busy with earlier mail: not counted against "
                    "[retry] max_attempts (it waits for its turn, up to [retry] max_age)")


def _summary(outcomes: Mapping[str, Outcome]) -> str:
    kinds: dict[str, int] = {}
    for outcome in outcomes.values():
        kinds[outcome.kind.value] = kinds.get(outcome.kind.value, 0) + 1
    return ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
