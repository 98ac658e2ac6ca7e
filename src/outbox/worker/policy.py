"""The retry and recovery policies of the configured settings: what the worker retries by,
and what submitting, importing and checking the queue recover by. Kept apart from the
claim loop so that those load none of delivery."""

from __future__ import annotations

from outbox.config import Settings
from outbox.core.recovery import Recovery
from outbox.core.retry import RetryPolicy


def retry_policy(settings: Settings) -> RetryPolicy:
    r = settings.retry
    return RetryPolicy(r.first_delay, r.max_delay, r.max_attempts, r.max_age)


def recovery_policy(settings: Settings) -> Recovery:
    return Recovery(retry_policy(settings), settings.delivery.on_uncertain)
