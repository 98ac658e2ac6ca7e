"""Doctor's verdicts (ops/checks.py) from made-up observations: no network, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from outbox.config import AlertSettings, DoctorSettings, RelaySettings
from outbox.core.guidance import describe
from outbox.core.model import Reply
from outbox.core.replies import greeting_time
from outbox.core.report import Condition, SessionFailure, Stage
from outbox.delivery.smtp.info import SessionInfo
from outbox.delivery.smtp.probe import ProbeResult
from outbox.ops.checks import (
    Check,
    DiskObservation,
    QueueObservation,
    RelayLimits,
    RelayObservation,
    Report,
    Status,
    TimeSource,
    clock_check,
    disk_check,
    failed_step,
    queue_checks,
    relay_checks,
)
from outbox.store.base import Alert, QueueStats

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LIMITS = RelayLimits(max_message_size=25_000_000, certificate_warning=timedelta(days=14))


def relay(**values: Any) -> RelaySettings:
    return RelaySettings(**{"name": "r", "host": "smtp.example.com", "port": 587, **values})


def info(**values: Any) -> SessionInfo:
    base: dict[str, Any] = {"greeting": Reply(220, None, "smtp.example.com ESMTP"),
                            "extensions": {"size": "30000000", "auth": "PLAIN"},
                            "tls_version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384",
                            "certificate_expires": NOW + timedelta(days=90)}
    return SessionInfo(**{**base, **values})


def observe(settings: RelaySettings, failure: SessionFailure | None = None,
            **info_values: Any) -> list[Check]:
    result = ProbeResult(settings.name, failure, info(**info_values), "")
    return relay_checks(RelayObservation(settings, ("192.0.2.7",), probe=result), NOW, LIMITS)


def by_step(checks: list[Check]) -> dict[str, Check]:
    return {c.name.removeprefix("relay r: "): c for c in checks}


def test_a_name_that_does_not_resolve_fails_at_dns_with_the_dns_fix() -> None:
    checks = relay_checks(RelayObservation(relay(), dns_error="Name or service not known"),
                          NOW, LIMITS)
    assert checks == [Check("relay r: dns", Status.FAIL,
                            "smtp.example.com does not resolve: Name or service not known",
                            describe(Condition.DNS_FAILURE.value).next_step)]


def test_a_certificate_close_to_expiry_warns() -> None:
    tls = by_step(observe(relay(), certificate_expires=NOW + timedelta(days=3)))["tls"]
    assert tls.status is Status.WARN
    assert tls.detail.startswith("TLSv1.3 TLS_AES_256_GCM_SHA384; certificate valid until "
                                 "2030-01-04 (3 days left)")
    assert "renew" in tls.fix


def test_unverified_tls_warns() -> None:
    tls = by_step(observe(relay(tls_verify=False)))["tls"]
    assert tls.status is Status.WARN and "tls_verify = false" in tls.detail


def test_plaintext_warns_except_on_loopback() -> None:
    remote = by_step(observe(relay(security="none")))["tls"]
    local = by_step(observe(relay(security="none", host="127.0.0.1")))["tls"]
    assert remote.status is Status.WARN and "unencrypted" in remote.detail
    assert local.status is Status.SKIP


@pytest.mark.parametrize(("size", "status"), [
    ("30000000", Status.PASS), ("25000000", Status.PASS), ("10000000", Status.WARN),
    ("", Status.PASS)])
def test_size_compares_the_relay_limit_with_ours(size: str, status: Status) -> None:
    extensions = {"size": size} if size else {}
    check = by_step(observe(relay(), extensions=extensions))["size"]
    assert check.status is status
    if status is Status.WARN:
        assert check.fix.startswith("Lower [limits] max_message_size to 10000000")


def test_auth_is_skipped_without_credentials_and_named_with_them() -> None:
    assert by_step(observe(relay()))["auth"].status is Status.SKIP
    with_login = by_step(observe(relay(username="u", password="p"), auth_mechanism="LOGIN"))
    assert with_login["auth"].detail == ("logged in as u with LOGIN, credentials: config file "
                                         "(no mail sent)")


def test_a_reply_failure_names_the_reply_and_its_guidance() -> None:
    failure = SessionFailure(Stage.GREETING, reply=Reply(421, "4.3.2", "Too busy"))
    checks = by_step(observe(relay(), failure))
    assert list(checks) == ["dns", "connect", "greeting"]
    assert checks["greeting"].status is Status.FAIL
    assert checks["greeting"].detail.endswith(": 421 4.3.2 Too busy")


@pytest.mark.parametrize(("failure", "step"), [
    (None, None),
    (SessionFailure(Stage.CONNECT, condition=Condition.CONNECTION_REFUSED), "connect"),
    (SessionFailure(Stage.CONNECT, condition=Condition.TLS_CERT_EXPIRED), "tls"),
    (SessionFailure(Stage.STARTTLS, condition=Condition.STARTTLS_NOT_OFFERED), "tls"),
    (SessionFailure(Stage.STARTTLS, reply=Reply(454, "4.7.0", "TLS not available")), "tls"),
    (SessionFailure(Stage.GREETING, reply=Reply(554, None, "go away")), "greeting"),
    (SessionFailure(Stage.EHLO, condition=Condition.COMMAND_TIMEOUT), "ehlo"),
    (SessionFailure(Stage.AUTH, condition=Condition.AUTH_NEEDS_TLS), "auth"),
])
def test_failed_step(failure: SessionFailure | None, step: str | None) -> None:
    assert failed_step(failure) == step


@pytest.mark.parametrize(("greeting", "expected"), [
    ("mx.example.com ESMTP Sendmail 8.15.2; Mon, 6 Jan 2025 10:00:00 +0100",
     datetime(2025, 1, 6, 9, 0, tzinfo=UTC)),
    ("mx ESMTP ready at 6 Jan 2025 10:00:00 GMT", datetime(2025, 1, 6, 10, 0, tzinfo=UTC)),
    ("mx ESMTP Tue, 07 Jan 2025 23:59:59 UTC", datetime(2025, 1, 7, 23, 59, 59, tzinfo=UTC)),
    ("smtp.test Python SMTP 1.4.6", None),
    ("mx ESMTP 6 Jan 2025 10:00:00", None),  # no zone: not a usable time
])
def test_greeting_time(greeting: str, expected: datetime | None) -> None:
    assert greeting_time(greeting) == expected


@pytest.mark.parametrize(("skew", "status", "words"), [
    (timedelta(seconds=2), Status.PASS, "2.0s ahead of"),
    (timedelta(seconds=-45), Status.WARN, "45.0s behind"),
    (timedelta(minutes=10), Status.FAIL, "600.0s ahead of"),
])
def test_clock_skew(skew: timedelta, status: Status, words: str) -> None:
    source = TimeSource("the database server", NOW - skew, NOW)
    check = clock_check([source], timedelta(seconds=30))
    assert check.status is status and words in check.detail
    assert check.fix == ("" if status is Status.PASS else describe("clock_skew").next_step)


def test_clock_skew_without_a_time_source_is_skipped_and_uses_the_worst_source() -> None:
    assert clock_check([], timedelta(seconds=30)).status is Status.SKIP
    sources = [TimeSource("a", NOW, NOW), TimeSource("b", NOW - timedelta(minutes=1), NOW)]
    check = clock_check(sources, timedelta(seconds=30))
    assert check.status is Status.WARN
    assert check.detail == "this machine is 60.0s ahead of b (compared with a, b)"


def test_clock_skew_names_who_measured_it() -> None:
    measured = TimeSource("the database server", NOW - timedelta(seconds=400), NOW,
                          who="delivery on host1 (measured 12s ago)")
    check = clock_check([TimeSource("the database server", NOW, NOW), measured],
                        timedelta(seconds=30))
    assert check.status is Status.FAIL
    assert check.detail == ("delivery on host1 (measured 12s ago) is 400.0s ahead of the "
                            "database server")


@pytest.mark.parametrize(("free", "total", "status"), [
    (50 * 10**9, 100 * 10**9, Status.PASS), (5 * 10**9, 100 * 10**9, Status.WARN),
    (10**8, 100 * 10**9, Status.FAIL)])
def test_disk(free: int, total: int, status: Status) -> None:
    check = disk_check(DiskObservation("database", "/var/lib/outbox", free, total), 10**9)
    assert check.status is status
    assert check.name == "disk (database)" and "/var/lib/outbox" in check.detail


def queue(**by_status: int) -> QueueObservation:
    stats = QueueStats({"queued": 0, "deferred": 0, "held": 0, **by_status},
                       NOW - timedelta(hours=2) if by_status.get("queued") else None)
    return QueueObservation(stats, (), NOW, AlertSettings(), DoctorSettings())


def test_a_quiet_queue_passes() -> None:
    assert [c.status for c in queue_checks(queue())] == [Status.PASS] * 4


def test_an_old_deferred_and_held_queue_warns_with_fixes() -> None:
    checks = {c.name: c for c in queue_checks(queue(queued=1, deferred=150, held=2))}
    assert checks["queue: oldest waiting"].status is Status.WARN
    assert "accepted 2h ago" in checks["queue: oldest waiting"].detail
    assert checks["queue: deferred"].status is Status.WARN
    assert checks["queue: held"].fix == describe("messages_held").next_step


def test_active_alerts_warn() -> None:
    alert = Alert("queue.held", "warning", "Messages are held", "2 message(s) held",
                  "messages_held", NOW)
    observation = QueueObservation(QueueStats({}, None), (alert,), NOW)
    (check,) = [c for c in queue_checks(observation) if c.name == "alerts"]
    assert check.status is Status.WARN
    assert check.detail == "1 active: Messages are held (2 message(s) held)"
    assert check.fix == describe("messages_held").next_step


def test_several_active_alerts_each_give_their_next_step() -> None:
    held = Alert("queue.held", "warning", "Messages are held", "2 message(s) held",
                 "messages_held", NOW)
    login = Alert("relay.r.login_required", "critical", "Relay r needs a login", "530",
                  "smtp.530", NOW)
    again = Alert("queue.held2", "warning", "More held", "3", "messages_held", NOW)
    observation = QueueObservation(QueueStats({}, None), (held, login, again), NOW)
    (check,) = [c for c in queue_checks(observation) if c.name == "alerts"]
    assert check.fix == (f"Messages are held / More held: {describe('messages_held').next_step}"
                         f" Relay r needs a login: {describe('smtp.530').next_step}")


def test_warnings_alone_exit_0_and_a_failure_exits_1() -> None:
    warn = Check("a", Status.WARN, "w", "fix it")
    fail = Check("b", Status.FAIL, "f", "fix that")
    assert Report((warn, Check("c", Status.SKIP, "s"))).exit_code == 0
    report = Report((warn, fail))
    assert report.exit_code == 1
    assert report.as_dict() == {
        "ok": False, "summary": {"pass": 0, "warn": 1, "fail": 1, "skip": 0},
        "checks": [{"name": "a", "status": "warn", "detail": "w", "fix": "fix it"},
                   {"name": "b", "status": "fail", "detail": "f", "fix": "fix that"}]}
