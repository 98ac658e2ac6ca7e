"""How long history and idempotency keys are kept, and how fast the purge goes.

The worker's retention loop (worker/retention.py) deletes in small batches, one
transaction each: when a batch came back full there is more to do and the next
round follows after a short breath (delivery's writes go in between); when none
did, the loop rests for `purge_every`. Pure: times in, times out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

BREATH = 0.05  # seconds between two full batches


@dataclass(frozen=True, slots=True)
class Retention:
    keep_history: timedelta  # 0: history is kept forever
    idempotency_ttl: timedelta
    batch: int
    every: timedelta

    def history_before(self, now: datetime) -> datetime | None:
        """Finished mail that finished before this goes (None: nothing goes)."""
        if self.keep_history <= timedelta(0):
            return None
        return now - self.keep_history

    def keys_before(self, now: datetime) -> datetime:
        """Idempotency keys of messages accepted before this are forgotten."""
        return now - self.idempotency_ttl

    def pause_after(self, purged: tuple[int, ...]) -> float:
        """Seconds until the next round, given what each purge of this one deleted."""
        if any(count >= self.batch for count in purged):
            return BREATH
        return self.every.total_seconds()
