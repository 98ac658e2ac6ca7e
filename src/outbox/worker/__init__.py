"""Delivery: the claim loop and its supervised helpers (worker/loop.py), one
attempt per claim (worker/attempt.py), crash recovery (worker/sweeper.py) and
the group commit of results (worker/recorder.py)."""

from outbox.worker.attempt import Deliverer
from outbox.worker.loop import Worker, new_owner_id, recovery_policy, retry_policy

__all__ = ["Deliverer", "Worker", "new_owner_id", "recovery_policy", "retry_policy"]
