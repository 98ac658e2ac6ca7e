"""A claim that ended without a verdict: what becomes of its message.

Three ways a claim is abandoned:

    owner_gone      the process holding it died (its liveness lock is free)
    lease_expired   its lease ran out (a hung or paused process)
    crashed         the delivery raised inside Outbox; the owner gives it back
    restored        it was in flight when a backup was taken (`outbox restore`):
                    it comes back `queued`, due at once

The attempt counts either way (a message that kills its worker must not loop
forever), so the retry limits hold here as they do after any attempt: past
`max_attempts` or `max_age` the message fails, unless it is held. When the
final "." may have left during the attempt, an `uncertain` event records it
(duplicates at a relay are bounded by the number of those events), and with
`on_uncertain = "hold"` the message waits for an operator instead, held
mail never failing on its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from outbox.core.model import Event, EventType, MessageStatus, Outcome, OutcomeKind, Scope
from outbox.core.retry import RetryPolicy

UNCERTAIN_HOLD = "delivery uncertain: the attempt ended without a result; release to resend, " \
    "or cancel"


class Cause(StrEnum):
    OWNER_GONE = "owner_gone"
    LEASE_EXPIRED = "lease_expired"
    CRASHED = "crashed"
    RESTORED = "restored"


@dataclass(frozen=True, slots=True)
class AbandonedClaim:
    owner: str
    attempts_made: int  # before this attempt
    accepted_at: datetime
    held_for: timedelta  # time spent held: counted by neither limit
    cause: Cause
    may_have_sent: bool  # the final "." may have reached a relay
    detail: str = ""  # what went wrong, for a crash

    @property
    def attempt(self) -> int:
        return self.attempts_made + 1


@dataclass(frozen=True, slots=True)
class RecoveryVerdict:
    status: MessageStatus  # deferred, held or failed (queued after a restore)
    due_at: datetime | None
    events: tuple[Event, ...]
    hold_reason: str = ""
    fail_guidance: str = ""  # with status failed: the guidance key its recipients get

    @property
    def fails(self) -> bool:
        return self.status is MessageStatus.FAILED


@dataclass(frozen=True, slots=True)
class Recovery:
    """The policy applied to abandoned claims."""

    policy: RetryPolicy
    on_uncertain: str = "retry"  # retry | hold

    def decide(self, claim: AbandonedClaim, now: datetime,
               rng: random.Random) -> RecoveryVerdict:
        what = _what_happened(claim)
        uncertain = ([Event(now, EventType.UNCERTAIN, claim.attempt, guidance="uncertain_delivery",
                            detail=f"{what}; the relay may already have the message")]
                     if claim.may_have_sent else [])
        if claim.may_have_sent and self.on_uncertain == "hold":
            held = Event(now, EventType.HELD, claim.attempt, guidance="uncertain_delivery",
                         detail=f"{what}; held until an operator retries or cancels it")
            return RecoveryVerdict(MessageStatus.HELD, None, (*uncertain, held), UNCERTAIN_HOLD)
        retry = self.policy.decide(_outcome(claim), claim.attempt, claim.accepted_at, now, rng,
                                   claim.held_for)
        if retry.give_up:
            failed = Event(now, EventType.FAILED, claim.attempt, guidance=retry.guidance,
                           detail=f"{what}; {retry.reason}")
            return RecoveryVerdict(MessageStatus.FAILED, None, (*uncertain, failed),
                                   fail_guidance=retry.guidance)
        due = _due(claim, now, retry.retry_at)
        if claim.cause is Cause.RESTORED:
            queued = Event(now, EventType.QUEUED, claim.attempt, guidance=_guidance(claim),
                           detail=f"{what}; queued again")
            return RecoveryVerdict(MessageStatus.QUEUED, due, (*uncertain, queued))
        deferred = Event(now, EventType.DEFERRED, claim.attempt, guidance=_guidance(claim),
                         detail=f"{what}; next attempt at {due.isoformat()}")
        return RecoveryVerdict(MessageStatus.DEFERRED, due, (*uncertain, deferred))


def _outcome(claim: AbandonedClaim) -> Outcome:
    kind = OutcomeKind.UNCERTAIN if claim.may_have_sent else OutcomeKind.DEFERRED
    return Outcome(kind, Scope.MESSAGE, _guidance(claim), detail=claim.detail)


def _guidance(claim: AbandonedClaim) -> str:
    return "internal_error" if claim.cause is Cause.CRASHED else "worker_stopped"


def _due(claim: AbandonedClaim, now: datetime, retry_at: datetime | None) -> datetime:
    """A worker that vanished never gave the relay a chance to answer: try again at
    once. A crash inside Outbox may repeat: back off as after any failure."""
    if claim.cause is Cause.CRASHED and retry_at is not None:
        return retry_at
    return now


def _what_happened(claim: AbandonedClaim) -> str:
    if claim.cause is Cause.OWNER_GONE:
        return f"attempt {claim.attempt} ended with its worker {claim.owner}, which is gone"
    if claim.cause is Cause.RESTORED:
        return f"attempt {claim.attempt} was in flight when the backup was taken"
    if claim.cause is Cause.LEASE_EXPIRED:
        return (f"attempt {claim.attempt} ran past its lease (worker {claim.owner} stopped "
                "answering)")
    detail = f": {claim.detail}" if claim.detail else ""
    return f"attempt {claim.attempt} failed inside Outbox{detail}"
