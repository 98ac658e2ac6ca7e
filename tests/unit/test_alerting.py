"""The alert rules (core.alerting): plain tables, fixed times, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.alerting import (
    AlertSpec,
    RelayState,
    Severity,
    Snapshot,
    Thresholds,
    breakdown,
    changes,
    duration,
    evaluate,
    failures,
    relay_outcome,
    relay_state,
    stale,
)
from outbox.core.guidance import CATALOGUE

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LIMITS = Thresholds(failure_ratio=0.5, window=timedelta(minutes=15), min_attempts=10,
                    oldest_queued_age=timedelta(hours=1), held_count=1)


def snapshot(outcomes: dict[str, dict[str, int]] | None = None,
             oldest: timedelta | None = None, held: int = 0) -> Snapshot:
    return Snapshot(NOW, outcomes or {}, NOW - oldest if oldest is not None else None, held)


def keys(specs: list[AlertSpec]) -> list[str]:
    return [spec.key for spec in specs]


def test_a_quiet_queue_wants_no_alert() -> None:
    assert evaluate(snapshot(), LIMITS) == []
    assert evaluate(snapshot({"default": {"sent": 100}}, oldest=timedelta(minutes=5)),
                    LIMITS) == []


@pytest.mark.parametrize(("outcomes", "alerting"), [
    ({"deferred": 10}, True),
    ({"deferred": 5, "sent": 5}, True),  # exactly the ratio
    ({"deferred": 4, "sent": 6}, False),
    ({"deferred": 3, "failed": 2, "uncertain": 1, "sent": 4}, True),
    ({"deferred": 9}, False),  # under min_attempts: too few to judge
    ({"partially_sent": 10}, False),  # partially sent delivered something
])
def test_failure_rate_alert_needs_the_ratio_and_enough_attempts(
        outcomes: dict[str, int], alerting: bool) -> None:
    wanted = evaluate(snapshot({"default": outcomes}), LIMITS)
    assert ("relay.default.failure_rate" in keys(wanted)) is alerting


def test_failure_rate_alert_says_how_many_and_what() -> None:
    (spec,) = evaluate(snapshot({"smtp1": {"deferred": 6, "failed": 2, "sent": 2}}), LIMITS)
    assert spec == AlertSpec("relay.smtp1.failure_rate", Severity.WARNING,
                             "Relay smtp1 keeps failing",
                             "8 of 10 attempts in the last 15m did not deliver "
                             "(6 deferred, 2 failed)", "relay_failure_rate")


def test_held_mail_means_the_relay_needs_attention() -> None:
    wanted = evaluate(snapshot({"default": {"held": 1, "sent": 50}}), LIMITS)
    assert keys(wanted) == ["relay.default.needs_attention"]
    assert wanted[0].severity is Severity.CRITICAL
    assert wanted[0].guidance == "relay_needs_attention"


def test_a_message_held_for_itself_wants_only_the_held_alert() -> None:
    """A corrupt or missing attachment (the store counts it as held_message) says
    nothing about the relay: no relay alert, no relay state."""
    wanted = evaluate(snapshot({"picky": {"held_message": 10}}, held=10), LIMITS)
    assert keys(wanted) == ["queue.held"]
    assert relay_state({"held_message": 1}, LIMITS) is RelayState.OK
    assert relay_state({"held_message": 1, "held": 1}, LIMITS) is RelayState.NEEDS_ATTENTION


@pytest.mark.parametrize(("outcome", "relay", "held_for", "counted"), [
    ("held", "picky", "picky", "held"),  # the relay holds it: credentials, no AUTH
    ("held", "picky", None, "held_message"),  # held for itself: a corrupt attachment
    ("held", "backup", "picky", "held_message"),  # another relay of the attempt holds it
    ("sent", "picky", None, "sent"),
    ("deferred", "picky", None, "deferred"),
])
def test_a_held_attempt_is_the_relays_only_when_it_holds_the_message(
        outcome: str, relay: str, held_for: str | None, counted: str) -> None:
    assert relay_outcome(outcome, relay, held_for) == counted


def test_a_relay_marked_in_the_store_needs_attention_with_its_own_guidance() -> None:
    marked = Snapshot(NOW, {}, None, 0, {"o365": ("535 5.7.8 bad credentials", "smtp.5.7.8")})
    (spec,) = evaluate(marked, LIMITS)
    assert spec == AlertSpec("relay.o365.needs_attention", Severity.CRITICAL,
                             "Relay o365 needs attention",
                             "its login failed (535 5.7.8 bad credentials); its mail is held",
                             "smtp.5.7.8")
    unexplained = Snapshot(NOW, {"o365": {"held": 2}}, None, 0, {"o365": ("", "")})
    (spec,) = evaluate(unexplained, LIMITS)
    assert spec.guidance == "relay_needs_attention"
    assert relay_state({}, LIMITS, marked=True) is RelayState.NEEDS_ATTENTION


def relay_now(outcomes: dict[str, int], latest: str,
              marked: dict[str, tuple[str, str]] | None = None) -> Snapshot:
    return Snapshot(NOW, {"r": outcomes}, None, 0, marked or {}, latest={"r": latest})


@pytest.mark.parametrize("outcomes", [{"deferred": 20, "sent": 1}, {"held": 3, "sent": 1},
                                      {"failed": 9, "deferred": 9, "partially_sent": 1}])
def test_a_relay_whose_newest_attempt_delivered_wants_no_relay_alert(
        outcomes: dict[str, int]) -> None:
    """Fixed relays clear at once, not when their failures leave the window."""
    assert evaluate(relay_now(outcomes, "sent"), LIMITS) == []
    assert relay_state(outcomes, LIMITS, latest="sent") is RelayState.OK
    newest = "held" if "held" in outcomes else "deferred"
    assert evaluate(relay_now(outcomes, newest), LIMITS) != []
    assert relay_state(outcomes, LIMITS, latest=newest) is not RelayState.OK


def test_a_mark_in_the_store_stays_until_it_is_lifted_even_after_a_delivery() -> None:
    marked = relay_now({"sent": 1}, "sent", {"r": ("535 5.7.8 bad credentials", "smtp.5.7.8")})
    assert keys(evaluate(marked, LIMITS)) == ["relay.r.needs_attention"]
    assert relay_state({"sent": 1}, LIMITS, marked=True, latest="sent") is \
        RelayState.NEEDS_ATTENTION


def test_stale_names_the_active_alerts_whose_text_changed() -> None:
    (now,) = evaluate(snapshot({"r": {"deferred": 12}}), LIMITS)
    active = {now.key: (now.title, "10 of 10 attempts ...", now.guidance)}
    assert stale([now], active) == (now,)
    assert stale([now], {now.key: (now.title, now.detail, now.guidance)}) == ()
    assert stale([now], {}) == (), "not active: raised, not refreshed"


def test_relays_are_judged_each_on_its_own_attempts() -> None:
    wanted = evaluate(snapshot({"b": {"deferred": 10}, "a": {"sent": 10}, "c": {"held": 2}}),
                      LIMITS)
    assert keys(wanted) == ["relay.b.failure_rate", "relay.c.needs_attention"]


@pytest.mark.parametrize(("age", "alerting"), [
    (timedelta(minutes=59), False), (timedelta(hours=1), True), (timedelta(days=2), True)])
def test_backlog_alert_when_the_oldest_waiting_message_is_too_old(
        age: timedelta, alerting: bool) -> None:
    wanted = evaluate(snapshot(oldest=age), LIMITS)
    assert ("queue.backlog" in keys(wanted)) is alerting


def test_backlog_detail_names_the_age_and_the_limit() -> None:
    (spec,) = evaluate(snapshot(oldest=timedelta(hours=3)), LIMITS)
    assert spec.detail == "the oldest waiting message was accepted 3h ago (limit 1h)"


@pytest.mark.parametrize(("held", "limit", "alerting"), [
    (0, 1, False), (1, 1, True), (4, 5, False), (5, 5, True), (100, 0, False)])
def test_held_alert_from_the_held_count(held: int, limit: int, alerting: bool) -> None:
    limits = Thresholds(0.5, timedelta(minutes=15), 10, timedelta(hours=1), limit)
    assert ("queue.held" in keys(evaluate(snapshot(held=held), limits))) is alerting


def test_zero_thresholds_turn_alerts_off() -> None:
    off = Thresholds(0, timedelta(minutes=15), 1, timedelta(0), 0)
    assert evaluate(snapshot({"a": {"deferred": 100}}, oldest=timedelta(days=9), held=9),
                    off) == []


def test_every_alert_names_a_guidance_entry() -> None:
    wanted = evaluate(snapshot({"a": {"deferred": 10, "held": 1}}, oldest=timedelta(days=1),
                               held=3), LIMITS)
    assert len(wanted) == 4
    assert all(spec.guidance in CATALOGUE for spec in wanted)


@pytest.mark.parametrize(("outcomes", "state"), [
    ({}, RelayState.OK),
    ({"sent": 9, "deferred": 1}, RelayState.OK),
    ({"sent": 1, "deferred": 1}, RelayState.DEFERRING),
    ({"deferred": 1}, RelayState.DEFERRING),  # min_attempts is for alerts, not state
    ({"sent": 99, "held": 1}, RelayState.NEEDS_ATTENTION),
])
def test_relay_state(outcomes: dict[str, int], state: RelayState) -> None:
    assert relay_state(outcomes, LIMITS) is state


def test_relay_state_with_failure_alerts_off_is_deferring_on_any_failure() -> None:
    off = Thresholds(0, timedelta(minutes=15), 10, timedelta(0), 0)
    assert relay_state({"sent": 99, "deferred": 1}, off) is RelayState.DEFERRING


def test_changes_raise_what_is_wanted_and_clear_what_is_not() -> None:
    wanted = evaluate(snapshot({"a": {"deferred": 10}}, held=1), LIMITS)
    plan = changes(wanted, ["queue.held", "relay.b.failure_rate", "queue.backlog"])
    assert [s.key for s in plan.to_raise] == ["relay.a.failure_rate", "queue.held"]
    assert plan.to_clear == ("queue.backlog", "relay.b.failure_rate")
    assert changes([], []).to_clear == ()


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(seconds=45), "45s"), (timedelta(minutes=15), "15m"),
    (timedelta(minutes=90), "1h"), (timedelta(days=3, hours=5), "3d"),
    (timedelta(seconds=-5), "0s")])
def test_duration(delta: timedelta, text: str) -> None:
    assert duration(delta) == text


def test_breakdown_lists_failures_most_frequent_first() -> None:
    assert breakdown({"sent": 5, "failed": 1, "deferred": 7, "held": 0}) == "7 deferred, 1 failed"


counts = st.dictionaries(st.sampled_from(["sent", "partially_sent", "deferred", "failed",
                                          "held", "uncertain"]), st.integers(0, 1000))


@given(counts)
def test_failures_never_exceed_the_attempts(outcomes: dict[str, int]) -> None:
    assert 0 <= failures(outcomes) <= sum(outcomes.values())


@given(counts, st.floats(0.01, 1.0))
def test_a_failure_rate_alert_implies_a_deferring_or_worse_relay(
        outcomes: dict[str, int], ratio: float) -> None:
    limits = Thresholds(ratio, timedelta(minutes=15), 1, timedelta(0), 0)
    if "relay.r.failure_rate" in keys(evaluate(snapshot({"r": outcomes}), limits)):
        assert relay_state(outcomes, limits) is not RelayState.OK
