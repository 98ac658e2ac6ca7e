"""Doctor's words (no network, no database) for two things a stranger pass found it did
not say: a relay marked needs_attention without a login tried (core.attention) was said
to have failed its login, and a relay's due mail waiting for its sessions
(ops/waiting.py) was not shown at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.alerting import Snapshot, Thresholds, evaluate
from outbox.core.attention import attention_cause, login_tried
from outbox.core.guidance import LOGIN_REQUIRED, describe
from outbox.core.report import Condition
from outbox.ops.checks import QueueObservation, Status, relay_mark_check
from outbox.ops.waiting import WAITING_MANY, waiting_check
from outbox.store.base import QueueStats, RelayAuth, RelayDue

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LIMITS = Thresholds(0.5, timedelta(minutes=15), 10, timedelta(hours=1), 1)

# The marks made with no login tried, what the relay or Outbox said, and the words.
NOT_TRIED = [
    (LOGIN_REQUIRED, "530 5.7.0 Authentication required",
     "it requires a login and none is configured"),
    (Condition.AUTH_NEEDS_TLS.value, "AUTH is only sent over TLS",
     "Outbox did not log in, as the connection is not encrypted"),
    (Condition.AUTH_NOT_OFFERED.value, "the relay offers no AUTH",
     "Outbox did not log in, as the relay offers no login method its credentials can use"),
    (Condition.TOKEN_REFRESH_FAILED.value, "the token endpoint refused the refresh token",
     "Outbox did not log in, as it got no OAuth2 access token"),
]


@pytest.mark.parametrize(("key", "reason", "cause"), NOT_TRIED)
def test_a_mark_made_without_a_login_says_why_in_the_alert_and_doctor(
        key: str, reason: str, cause: str) -> None:
    assert not login_tried(key)
    (alert,) = evaluate(Snapshot(NOW, {}, None, 0, {"r": (reason, key)}), LIMITS)
    assert alert.detail == f"{cause} ({reason}); its mail is held"
    assert alert.guidance == key
    mark = RelayAuth("r", state="needs_attention", reason=reason, guidance=key, updated_at=NOW)
    check = relay_mark_check("r", mark)
    assert check is not None and check.status is Status.FAIL
    assert check.detail == (f"marked needs attention since 2030-01-01 12:00 UTC: {cause} "
                            f"({reason}); its mail is held")
    assert check.fix == describe(key).next_step
    # Without what was said, the cause alone: never "its login failed".
    (alert,) = evaluate(Snapshot(NOW, {}, None, 0, {"r": ("", key)}), LIMITS)
    assert alert.detail == f"{cause}; its mail is held"


def test_a_refused_login_still_says_its_login_failed() -> None:
    assert login_tried("smtp.5.7.8")
    assert attention_cause("535 5.7.8 bad", "smtp.5.7.8") == "its login failed (535 5.7.8 bad)"
    assert attention_cause("250 ok", Condition.AUTH_NOT_CONFIRMED.value) == (
        "its login was not confirmed (250 ok)")
    mark = RelayAuth("r", state="needs_attention", guidance="smtp.5.7.8")
    check = relay_mark_check("r", mark)
    assert check is not None and check.detail.endswith(": its login failed; its mail is held")


def observed(due: dict[str, RelayDue]) -> QueueObservation:
    return QueueObservation(QueueStats({}, None, due), (), NOW)


SLOW = RelaySettings(name="slow", host="127.0.0.1", port=25, security="none",
                     max_connections=2)
POLLS = DeliverySettings(poll_interval=timedelta(seconds=1))


@pytest.mark.parametrize(("count", "waited", "status"), [
    (3, timedelta(seconds=2), Status.PASS),  # claimed at the next look
    (3, timedelta(seconds=5), Status.WARN),  # five poll intervals: no room for it
    (WAITING_MANY, timedelta(0), Status.WARN),  # a backlog, however young
])
def test_a_relays_due_mail_warns_once_it_waits_for_room(
        count: int, waited: timedelta, status: Status) -> None:
    check = waiting_check(SLOW, observed({"slow": RelayDue(count, NOW - waited)}), POLLS)
    assert check is not None and check.status is status
    assert check.name == "relay slow: waiting"
    assert check.detail == (f"{count} message(s) due now, not being delivered yet (the oldest "
                            f"for {int(waited.total_seconds())}s; max_connections 2)")
    if status is Status.WARN:
        assert check.fix.startswith("Raise max_connections of relay slow if the relay allows "
                                    "more sessions; else it is slow to answer. Each attempt's "
                                    "time is in the log (`relay answered`, `seconds`).")


def test_the_fix_names_the_limit_in_force() -> None:
    """Half of concurrency below max_connections binds first (a stranger pass: doctor said
    to raise max_connections with concurrency 2, where one session was all a worker used),
    and a rate before both."""
    due = observed({"slow": RelayDue(3, NOW - timedelta(minutes=1))})
    few = DeliverySettings(poll_interval=timedelta(seconds=1), concurrency=2)
    check = waiting_check(SLOW, due, few)
    assert check is not None and check.fix.startswith(
        "A worker gives relay slow at most half of [delivery] concurrency (2), fewer than its "
        "max_connections: raise concurrency.")
    paced = SLOW.model_copy(update={"rate": "6/m"})
    check = waiting_check(paced, due, few)
    assert check is not None and check.fix.startswith(
        "Relay slow is limited to 6/m (its rate): raise it if the relay allows more.")


def test_no_due_mail_or_no_database_is_no_check() -> None:
    assert waiting_check(SLOW, observed({"other": RelayDue(9, NOW)}), POLLS) is None
    assert waiting_check(SLOW, None, POLLS) is None
