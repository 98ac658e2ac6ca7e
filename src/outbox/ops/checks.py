"""`outbox doctor`'s checks as data: what was observed in, `Check` results out.

Pure: `doctor.py` does the looking (DNS, a relay probe, the database, the
disk) and hands its observations here. Every check has a name, a status
(pass, warn, fail, or skip when there was nothing to check), a one-line
detail and, unless it passed, a fix. Fixes for relay failures come from the
guidance catalogue, so doctor and a failed message say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from outbox.config import AlertSettings, DoctorSettings, RelaySettings
from outbox.core.alerting import duration
from outbox.core.attention import attention_cause, login_tried
from outbox.core.governor import GovernorState, State
from outbox.core.guidance import Guidance, describe, key_for_reply
from outbox.core.report import Condition, SessionFailure, Stage
from outbox.delivery.smtp.hostnames import is_loopback
from outbox.delivery.smtp.info import SessionInfo
from outbox.delivery.smtp.probe import ProbeResult
from outbox.store.base import Alert, DatabaseInfo, QueueStats, RelayAuth

CLOCK_SKEW_FAILURE = timedelta(minutes=5)  # TLS validity and OAuth2 tokens stop working
LOW_DISK_SHARE = 0.10
START_ONCE = "Start `outbox serve` (or `outbox worker`) once: it creates and migrates the database."


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # nothing to check (no credentials, no time source)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail,
                "fix": self.fix}


@dataclass(frozen=True, slots=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(check.status is not Status.FAIL for check in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        return {s.value: sum(c.status is s for c in self.checks) for s in Status}

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "summary": self.counts(),
                "checks": [check.as_dict() for check in self.checks]}


def passed(name: str, detail: str) -> Check:
    return Check(name, Status.PASS, detail)


def warned(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.WARN, detail, fix)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.FAIL, detail, fix)


def skipped(name: str, detail: str) -> Check:
    return Check(name, Status.SKIP, detail)


# --- relays ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RelayObservation:
    relay: RelaySettings  # with the credentials it was probed with applied
    addresses: tuple[str, ...] = ()
    dns_error: str = ""
    probe: ProbeResult | None = None  # None: not probed (DNS failed)
    credentials: str = "config file"  # where they come from (ops.credentials.Login.source)


@dataclass(frozen=True, slots=True)
class RelayLimits:
    max_message_size: int
    certificate_warning: timedelta


@dataclass(frozen=True, slots=True)
class _Step:
    prefix: str
    relay: RelaySettings
    info: SessionInfo
    now: datetime
    limits: RelayLimits
    credentials: str = "config file"


_TLS_CONDITIONS = frozenset({
    Condition.TLS_CERT_EXPIRED, Condition.TLS_HOSTNAME_MISMATCH, Condition.TLS_SELF_SIGNED,
    Condition.TLS_UNKNOWN_CA, Condition.TLS_VERSION_MISMATCH, Condition.TLS_HANDSHAKE_FAILED,
    Condition.STARTTLS_NOT_OFFERED,
})
_STAGE_STEPS = {Stage.CONNECT: "connect", Stage.GREETING: "greeting", Stage.EHLO: "ehlo",
                Stage.STARTTLS: "tls", Stage.AUTH: "auth"}


def relay_checks(observed: RelayObservation, now: datetime, limits: RelayLimits) -> list[Check]:
    """DNS, connect, greeting, EHLO, TLS, AUTH and SIZE, in the order the session
    met them; checks after a failed one are left out (they did not run)."""
    relay, prefix = observed.relay, f"relay {observed.relay.name}"
    if observed.probe is None:
        return [failed(f"{prefix}: dns", f"{relay.host} does not resolve: {observed.dns_error}",
                       describe(Condition.DNS_FAILURE.value).next_step)]
    checks = [passed(f"{prefix}: dns", f"{relay.host} is {', '.join(observed.addresses)}")]
    failure = observed.probe.failure
    failing = failed_step(failure)
    step = _Step(prefix, relay, observed.probe.info, now, limits, observed.credentials)
    for name in steps_for(relay):
        if failure is not None and name == failing:
            used = f"credentials: {observed.credentials}" if name == "auth" else ""
            checks.append(failure_check(f"{prefix}: {name}", failure, used))
            break
        checks.append(_STEP_CHECKS[name](step))
    return checks


def steps_for(relay: RelaySettings) -> tuple[str, ...]:
    if relay.security == "tls":  # TLS from the first byte, before the greeting
        return ("connect", "tls", "greeting", "ehlo", "auth", "size")
    return ("connect", "greeting", "ehlo", "tls", "auth", "size")


def failed_step(failure: SessionFailure | None) -> str | None:
    if failure is None:
        return None
    if failure.condition in _TLS_CONDITIONS:
        return "tls"
    return _STAGE_STEPS.get(failure.stage, "connect")


def failure_check(name: str, failure: SessionFailure, note: str = "") -> Check:
    g = guidance_for(failure)
    what = str(failure.reply) if failure.reply else (failure.detail or str(failure.condition))
    return failed(name, f"{g.title}: {what}" + (f" ({note})" if note else ""), g.next_step)


def guidance_for(failure: SessionFailure) -> Guidance:
    if failure.reply is not None:
        return describe(key_for_reply(failure.reply, during_auth=failure.stage is Stage.AUTH))
    return describe((failure.condition or Condition.PROTOCOL_ERROR).value)


def _connect(step: _Step) -> Check:
    return passed(f"{step.prefix}: connect",
                  f"{step.relay.host}:{step.relay.port} accepted the connection")


def _greeting(step: _Step) -> Check:
    greeting = step.info.greeting
    return passed(f"{step.prefix}: greeting", str(greeting) if greeting else "(none recorded)")


def _ehlo(step: _Step) -> Check:
    offered = [f"{name.upper()} {value}".strip() for name, value in step.info.extensions.items()]
    detail = f"offers {', '.join(offered)}" if offered else "no ESMTP extensions (HELO only)"
    return passed(f"{step.prefix}: ehlo", detail)


def _tls(step: _Step) -> Check:
    name, relay, info = f"{step.prefix}: tls", step.relay, step.info
    if relay.security == "none":
        if is_loopback(relay.host):
            return skipped(name, "security = none on a loopback relay: nothing crosses a network")
        return warned(name, "security = none: mail and passwords cross the network unencrypted",
                      'Set security = "starttls" (port 587) or "tls" (port 465) if the relay '
                      "supports it.")
    session = f"{info.tls_version or 'TLS'} {info.cipher or ''}".strip()
    if not relay.tls_verify:
        return warned(name, f"{session}; the certificate is not checked (tls_verify = false)",
                      "Point ca_file at the relay's CA and turn tls_verify back on.")
    return _certificate(name, session, info.certificate_expires, step)


def _certificate(name: str, session: str, expires: datetime | None, step: _Step) -> Check:
    if expires is None:
        return passed(name, f"{session}; certificate verified")
    left = expires - step.now
    detail = (f"{session}; certificate valid until {expires:%Y-%m-%d} "
              f"({left.days} days left)")
    if left < step.limits.certificate_warning:
        return warned(name, detail, "Ask the relay's administrator to renew the certificate "
                      "before it expires; mail stops (held as a TLS failure) when it does.")
    return passed(name, detail)


def _auth(step: _Step) -> Check:
    """With the credentials delivery uses: stored ones override the config file's."""
    name, relay = f"{step.prefix}: auth", step.relay
    if not relay.has_credentials:
        return skipped(name, "no username and password configured or stored: no AUTH")
    mechanism = step.info.auth_mechanism or "AUTH"
    return passed(name, f"logged in as {relay.username} with {mechanism}, credentials: "
                        f"{step.credentials} (no mail sent)")


def _size(step: _Step) -> Check:
    name, limit = f"{step.prefix}: size", step.info.size_limit
    ours = step.limits.max_message_size
    if limit is None:
        return passed(name, "the relay advertises no SIZE limit")
    detail = f"the relay accepts up to {limit:,} bytes; [limits] max_message_size is {ours:,}"
    if limit < ours:
        return warned(name, detail, f"Lower [limits] max_message_size to {limit} so oversized "
                      "mail is refused when submitted, not when it is delivered.")
    return passed(name, detail)


_STEP_CHECKS = {"connect": _connect, "greeting": _greeting, "ehlo": _ehlo, "tls": _tls,
                "auth": _auth, "size": _size}


def relay_mark_check(relay: str, mark: RelayAuth | None) -> Check | None:
    """A relay marked needs_attention holds its mail until fixed. What the relay said
    to a login speaks for itself; a mark made without a login says why (core.attention):
    no login configured, none sent in clear, no usable method, no OAuth2 token."""
    if mark is None or not mark.needs_attention:
        return None
    since = f" since {mark.updated_at:%Y-%m-%d %H:%M} UTC" if mark.updated_at else ""
    cause = (mark.reason if mark.reason and login_tried(mark.guidance)
             else attention_cause(mark.reason, mark.guidance))
    return failed(f"relay {relay}: state", f"marked needs attention{since}: {cause}; its "
                  "mail is held", describe(mark.guidance or "relay_needs_attention").next_step)


def governor_check(relay: str, health: GovernorState | None, now: datetime) -> Check | None:
    """A relay backing off or throttled, as `relay ls` and /metrics show it."""
    if health is None or health.state(now) is State.OPEN:
        return None
    return warned(f"relay {relay}: delivery", health.describe(now),
                  describe(health.guidance or "relay_backing_off").next_step)


# --- clock ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TimeSource:
    name: str  # "relay default's greeting", "the database server"
    their_time: datetime
    our_time: datetime
    who: str = "this machine"  # or what delivery measured: "delivery on host1 (...)"

    @property
    def skew(self) -> timedelta:
        return self.our_time - self.their_time


def clock_check(sources: Sequence[TimeSource], max_skew: timedelta) -> Check:
    name = "clock skew"
    if not sources:
        return skipped(name, "no time source: no relay greeting carries a date and the "
                       "database is SQLite (this machine's clock)")
    worst = max(sources, key=lambda s: abs(s.skew))
    off = abs(worst.skew).total_seconds()
    ahead = "ahead of" if worst.skew > timedelta(0) else "behind"
    detail = f"{worst.who} is {off:.1f}s {ahead} {worst.name}"
    names = dict.fromkeys(s.name for s in sources)
    if len(names) > 1:
        detail += f" (compared with {', '.join(names)})"
    if abs(worst.skew) > CLOCK_SKEW_FAILURE:
        return failed(name, detail, describe("clock_skew").next_step)
    if abs(worst.skew) > max_skew:
        return warned(name, detail, describe("clock_skew").next_step)
    return passed(name, detail)


# --- database, disk, queue ------------------------------------------------------------

def database_checks(info: DatabaseInfo, where: str) -> list[Check]:
    checks = [passed("database", f"{info.backend} {info.version} answers at {where}")]
    if info.is_migrated:
        checks.append(passed("database schema", f"migrated (revision {info.revision})"))
    else:
        checks.append(failed("database schema", f"at revision {info.revision or 'none'}; this "
                             f"Outbox needs {info.head}", START_ONCE))
    return checks


def database_failure(detail: str, fix: str) -> Check:
    return failed("database", detail, fix)


@dataclass(frozen=True, slots=True)
class DiskObservation:
    label: str  # what lives there: "database", "log file", ...
    path: str
    free: int
    total: int


def disk_check(disk: DiskObservation, min_free: int) -> Check:
    name = f"disk ({disk.label})"
    detail = f"{_bytes(disk.free)} free of {_bytes(disk.total)} at {disk.path}"
    fix = (f"Free space on the disk holding {disk.path}: when it fills up, Outbox cannot "
           "accept mail.")
    if disk.free < min_free:
        return failed(name, f"{detail}; [doctor] min_free_disk is {_bytes(min_free)}", fix)
    if disk.total and disk.free < disk.total * LOW_DISK_SHARE:
        return warned(name, f"{detail} (under {LOW_DISK_SHARE:.0%})", fix)
    return passed(name, detail)


def _bytes(count: int) -> str:
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


@dataclass(frozen=True, slots=True)
class QueueObservation:
    stats: QueueStats
    active_alerts: tuple[Alert, ...]
    now: datetime
    alerts: AlertSettings = field(default_factory=AlertSettings)
    doctor: DoctorSettings = field(default_factory=DoctorSettings)


def queue_checks(queue: QueueObservation) -> list[Check]:
    return [_oldest(queue), _deferred(queue), _held(queue), _alerts(queue.active_alerts)]


def _oldest(queue: QueueObservation) -> Check:
    name, oldest = "queue: oldest waiting", queue.stats.oldest_pending_at
    if oldest is None:
        return passed(name, "nothing is waiting")
    age, limit = queue.now - oldest, queue.alerts.oldest_queued_age
    detail = f"the oldest queued or deferred message was accepted {duration(age)} ago"
    if limit > timedelta(0) and age >= limit:
        return warned(name, f"{detail} ([alerts] oldest_queued_age {duration(limit)})",
                      describe("queue_backlog").next_step)
    return passed(name, detail)


def _deferred(queue: QueueObservation) -> Check:
    count, limit = queue.stats.by_status.get("deferred", 0), queue.doctor.deferred_warning
    detail = f"{count} message(s) deferred, waiting for their next attempt"
    if count >= limit:
        return warned("queue: deferred", f"{detail} ([doctor] deferred_warning {limit})",
                      "Look at a deferred message's guidance: `outbox queue ls --status "
                      "deferred`, then `outbox status ID`.")
    return passed("queue: deferred", detail)


def _held(queue: QueueObservation) -> Check:
    count, limit = queue.stats.by_status.get("held", 0), queue.alerts.held_count
    detail = f"{count} message(s) held for an operator"
    if limit > 0 and count >= limit:
        return warned("queue: held", detail, describe("messages_held").next_step)
    return passed("queue: held", detail)


def _alerts(active: Iterable[Alert]) -> Check:
    alerts = list(active)
    if not alerts:
        return passed("alerts", "no active alerts")
    titles = "; ".join(f"{a.title} ({a.detail})" for a in alerts)
    return warned("alerts", f"{len(alerts)} active: {titles}", _alert_fixes(alerts))


def _alert_fixes(alerts: list[Alert]) -> str:
    """Each alert's next step, named by its title when there are several (the first
    alone was shown for all: stop 59's stranger pass); alerts with the same next step
    share it."""
    steps: dict[str, list[str]] = {}
    for alert in alerts:
        steps.setdefault(describe(alert.guidance).next_step, []).append(alert.title)
    if len(steps) == 1:
        return next(iter(steps))
    return " ".join(f"{' / '.join(titles)}: {step}" for step, titles in steps.items())
