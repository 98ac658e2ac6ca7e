"""The retry schedule: a pure function of attempts made, age, and chance.

`first_delay` doubles each attempt up to `max_delay`, with +-`jitter` spread
so that a relay coming back is not hit by the whole queue at once.
`max_attempts` counts the tries, the first included, but not those that held the
message, nor those that only a failure of the whole relay stopped (`wait_for_relay`:
such mail waits for the relay, up to `max_age`); `max_age` is measured from
acceptance. Time spent held is not counted by either (the caller passes `held_for`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from outbox.core.model import Outcome, OutcomeKind, RetryDecision


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first_delay: timedelta = timedelta(seconds=60)
    max_delay: timedelta = timedelta(hours=1)
    max_attempts: int = 20
    max_age: timedelta = timedelta(days=3)
    jitter: float = 0.2

    def delay(self, attempts_made: int, rng: random.Random) -> timedelta:
        """Wait before the next try, after `attempts_made` tries (>= 1)."""
        exponent = max(attempts_made - 1, 0)
        base = self.first_delay.total_seconds() * (2 ** min(exponent, 40))
        spread = 1 + rng.uniform(-self.jitter, self.jitter)
        seconds = min(base * spread, self.max_delay.total_seconds())
        return timedelta(seconds=max(seconds, 0.0))

    def decide(
        self,
        outcome: Outcome,
        attempts_made: int,
        accepted_at: datetime,
        now: datetime,
        rng: random.Random,
        held_for: timedelta = timedelta(0),
    ) -> RetryDecision:
        """Retry a deferred or uncertain outcome, or give up on it."""
        if outcome.kind not in (OutcomeKind.DEFERRED, OutcomeKind.UNCERTAIN):
            raise ValueError(f"only deferred or uncertain outcomes are retried, not {outcome.kind}")
        if attempts_made >= self.max_attempts:
            return RetryDecision(True, None, f"gave up after {attempts_made} attempts "
                                 "(retry.max_attempts)", "max_attempts_reached")
        deadline = accepted_at + self.max_age + held_for
        wait = self.delay(attempts_made, rng)
        if outcome.retry_after is not None:
            wait = max(wait, outcome.retry_after)
        retry_at = now + wait
        if retry_at > deadline:
            if now >= deadline:
                return RetryDecision(True, None, "gave up: older than retry.max_age",
                                     "max_age_reached")
            retry_at = deadline
        return RetryDecision(False, retry_at)

    def wait_for_relay(self, retry_after: timedelta | None, accepted_at: datetime,
                       now: datetime, rng: random.Random,
                       held_for: timedelta = timedelta(0)) -> RetryDecision:
        """A relay-wide failure: wait for the relay's back-off (`retry_after`), spread
        so the whole queue does not come back at once; no attempt is spent, so only
        `max_age` ends the wait."""
        deadline = accepted_at + self.max_age + held_for
        if now >= deadline:
            return RetryDecision(True, None, "gave up: older than retry.max_age",
                                 "max_age_reached")
        wait = retry_after if retry_after is not None else self.first_delay
        spread = wait.total_seconds() * (1 + rng.uniform(0, self.jitter))
        return RetryDecision(False, min(now + timedelta(seconds=max(spread, 0.0)), deadline))
