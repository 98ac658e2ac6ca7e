"""A retry that may add a copy at the relay asks first (core.uncertain)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from outbox.core.model import Event, EventType, RecipientStatus
from outbox.core.uncertain import confirm_retry, uncertain_tries
from outbox.errors import ConfirmationRequired

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class R:
    address: str
    status: RecipientStatus


def uncertain(attempt: int | None, recipient: str | None = None) -> Event:
    return Event(T0 + timedelta(minutes=attempt or 0), EventType.UNCERTAIN, attempt, recipient)


def test_three_uncertain_tries_of_two_recipients_are_three_copies() -> None:
    events = [e for n in (1, 2, 3) for e in (uncertain(n, "a@x.test"), uncertain(n, "b@x.test"))]
    assert uncertain_tries(events, {"a@x.test", "b@x.test"}) == 3
    with pytest.raises(ConfirmationRequired, match="relay 3 time"):
        confirm_retry("m1", events, [R("a@x.test", RecipientStatus.FAILED)], confirm=False)
    confirm_retry("m1", events, [R("a@x.test", RecipientStatus.FAILED)], confirm=True)


def test_a_recovered_try_counts_for_every_recipient() -> None:
    assert uncertain_tries([uncertain(1)], {"a@x.test"}) == 1


@pytest.mark.parametrize("events", [
    [],  # ordinary deferred or failed mail
    [Event(T0, EventType.DEFERRED, 1, "a@x.test")],
    [uncertain(1, "a@x.test")],  # only a recipient already sent (not sent again)
])
def test_no_confirmation_when_no_one_retried_may_have_it(events: list[Event]) -> None:
    recipients = [R("a@x.test", RecipientStatus.SENT), R("b@x.test", RecipientStatus.FAILED)]
    confirm_retry("m1", events, recipients, confirm=False)
