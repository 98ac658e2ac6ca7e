"""`core.retention`: what goes when, and how fast the loop goes round."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from outbox.core.retention import BREATH, Retention

NOW = datetime(2030, 1, 31, tzinfo=UTC)
POLICY = Retention(timedelta(days=30), timedelta(hours=24), 500, timedelta(minutes=5))


def test_cutoffs_follow_the_settings() -> None:
    assert POLICY.history_before(NOW) == datetime(2030, 1, 1, tzinfo=UTC)
    assert POLICY.keys_before(NOW) == datetime(2030, 1, 30, tzinfo=UTC)


def test_zero_keep_history_keeps_history_forever() -> None:
    forever = Retention(timedelta(0), timedelta(hours=24), 500, timedelta(minutes=5))

    assert forever.history_before(NOW) is None


def test_a_full_batch_means_more_to_do_soon_else_rest() -> None:
    assert POLICY.pause_after((0, 500, 0)) == BREATH
    assert POLICY.pause_after((12, 499, 3)) == 300.0
    assert POLICY.pause_after((0, 0, 0)) == 300.0
