"""`outbox doctor`: look at the database, the disk, every relay, the clock
and the queue, and report each as a check (`checks.py` decides the verdicts).

Relays are probed with `delivery.smtp.probe`, the same session setup
real deliveries use (connect, greeting, EHLO, STARTTLS, AUTH), then QUIT:
no mail is sent. They log in with the credentials delivery uses: those stored
with `outbox relay set-credentials` override the config file's
(`ops.credentials`), and the auth check says which. Nothing is written, except
a refresh token the provider rotated while doctor logged in (saved as delivery
saves it): a database that is missing or not migrated is reported, not created.

Clock skew has three possible sources, all used when present: a relay
greeting that carries a date, the PostgreSQL server's clock, and what delivery
measured in the last `READINGS_FRESH` (the store's clock readings: each
worker's skew against the database server, a relay greeting's or a token
endpoint's), so that a skewed worker on another machine shows here. SQLite's
clock is this machine's, so with SQLite, date-less greetings and no reading
the check says it had nothing to compare with.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from outbox.clock import utcnow
from outbox.config import DeliverySettings, RelaySettings, Settings
from outbox.core.governor import GovernorState
from outbox.core.replies import greeting_time
from outbox.delivery.smtp.probe import probe
from outbox.errors import OutboxError
from outbox.ops.checks import (
    START_ONCE,
    Check,
    DiskObservation,
    QueueObservation,
    RelayLimits,
    RelayObservation,
    Report,
    TimeSource,
    clock_check,
    database_checks,
    database_failure,
    disk_check,
    governor_check,
    queue_checks,
    relay_checks,
    relay_mark_check,
)
from outbox.ops.credentials import Login, login_for
from outbox.ops.listener import listener_checks, observe_listener
from outbox.ops.waiting import waiting_check
from outbox.store.base import ClockReading, RelayAuth, Store
from outbox.store.urls import database_url, safe_url

READINGS_FRESH = timedelta(minutes=10)  # clock readings older than this are ignored
PROBE_TIMEOUT = timedelta(seconds=10)  # doctor answers fast even when a relay does not
DNS_TIMEOUT = 10.0
DATABASE_FIX = ("Check [database] url, that the database server runs and that this machine may "
                "connect to it.")

Clock = Callable[[], datetime]


async def run_doctor(settings: Settings, database: Store | str, *,
                     clock: Clock = utcnow) -> Report:
    """Every check, in this order: database, disk, each relay, the SMTP submission
    listener, clock, queue. `database`: the open store, or why it could not be opened
    (the service opens it: `service.diagnostics`)."""
    state, relays, listener = await asyncio.gather(
        inspect_database(settings, database, clock),
        asyncio.gather(*(observe_relay_as_delivered(settings, database, r, clock)
                         for r in settings.relays)),
        observe_listener(settings.submission, settings.limits.max_message_size,
                         quick(settings.delivery)))
    checks = [*state.checks,
              *(disk_check(d, settings.doctor.min_free_disk) for d in observe_disks(settings))]
    checks += all_relay_checks(settings, [observed for observed, _ in relays], state, clock())
    if listener is not None:
        checks += listener_checks(listener, clock(), settings.doctor.certificate_warning)
    sources = [s for _, s in relays if s is not None] + state.time_sources
    checks.append(clock_check(sources, settings.doctor.max_clock_skew))
    if state.queue is not None:
        checks += queue_checks(state.queue)
    return Report(tuple(checks))


def all_relay_checks(settings: Settings, relays: list[RelayObservation],
                     database: DatabaseState, now: datetime) -> list[Check]:
    limits = RelayLimits(settings.limits.max_message_size, settings.doctor.certificate_warning)
    checks: list[Check] = []
    for observed in relays:
        name = observed.relay.name
        checks += relay_checks(observed, now, limits)
        marked = relay_mark_check(name, database.relay_marks.get(name))
        checks += [marked] if marked else []
        paced = governor_check(name, database.governor.get(name), now)
        checks += [paced] if paced else []
        waiting = waiting_check(observed.relay, database.queue, settings.delivery)
        checks += [waiting] if waiting else []
    return checks


# --- relays -----------------------------------------------------------------------------

async def observe_relay_as_delivered(settings: Settings, database: Store | str,
                                     relay: RelaySettings, clock: Clock
                                     ) -> tuple[RelayObservation, TimeSource | None]:
    """The relay probed with the credentials delivery uses (`ops.credentials`)."""
    return await observe_relay(await login_for(settings, database, relay), settings.delivery,
                               clock)


async def observe_relay(login: Login, delivery: DeliverySettings,
                        clock: Clock) -> tuple[RelayObservation, TimeSource | None]:
    relay = login.relay
    addresses, error = await resolve(relay.host, relay.port)
    if error:
        return RelayObservation(relay, dns_error=error, credentials=login.source), None
    started = clock()
    result = await probe(relay, quick(delivery), authenticators=login.authenticators)
    greeting = result.info.greeting
    their_time = greeting_time(greeting.text) if greeting else None
    source = (TimeSource(f"relay {relay.name}'s greeting", their_time, started)
              if their_time is not None else None)
    return RelayObservation(relay, addresses, probe=result, credentials=login.source), source


def quick(delivery: DeliverySettings) -> DeliverySettings:
    """The delivery settings with timeouts no longer than PROBE_TIMEOUT."""
    return delivery.model_copy(update={
        "connect_timeout": min(delivery.connect_timeout, PROBE_TIMEOUT),
        "command_timeout": min(delivery.command_timeout, PROBE_TIMEOUT)})


async def resolve(host: str, port: int) -> tuple[tuple[str, ...], str]:
    """The relay's addresses, or the resolver's error."""
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(
            loop.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM), DNS_TIMEOUT)
    except TimeoutError:
        return (), f"no answer from the resolver within {DNS_TIMEOUT:.0f}s"
    except OSError as exc:
        return (), str(exc.strerror or exc)
    return tuple(dict.fromkeys(str(info[4][0]) for info in found)), ""


# --- database and queue ---------------------------------------------------------------

@dataclass
class DatabaseState:
    checks: list[Check]
    queue: QueueObservation | None = None
    time_sources: list[TimeSource] = field(default_factory=list)
    relay_marks: dict[str, RelayAuth] = field(default_factory=dict)
    governor: dict[str, GovernorState] = field(default_factory=dict)


async def inspect_database(settings: Settings, database: Store | str,
                           clock: Clock) -> DatabaseState:
    if isinstance(database, str):
        fix = START_ONCE if database.endswith(MISSING) else DATABASE_FIX
        return DatabaseState([database_failure(database, fix)])
    try:
        return await read_database(database, settings, clock)
    except OutboxError as exc:
        return DatabaseState([database_failure(exc.message, DATABASE_FIX)])


async def read_database(store: Store, settings: Settings, clock: Clock) -> DatabaseState:
    before = clock()
    info = await store.describe_database()
    our_time = before + (clock() - before) / 2
    state = DatabaseState(database_checks(info, safe_url(settings.database.url)))
    if info.server_time is not None:
        state.time_sources.append(TimeSource("the database server", info.server_time, our_time))
    if info.is_migrated:
        state.queue = QueueObservation(await store.messages.stats(clock()),
                                       await store.alerts.list_alerts(True), clock(),
                                       settings.alerts, settings.doctor)
        state.relay_marks = {mark.relay: mark for mark in await store.relay_auth.relay_states()}
        state.governor = {g.relay: g for g in await store.governor.governor_states()}
        now = clock()
        state.time_sources += [measured(r, now) for r in
                               await store.alerts.clock_readings(now - READINGS_FRESH)]
    return state


def measured(reading: ClockReading, now: datetime) -> TimeSource:
    """A skew delivery measured, as a time source for the clock check."""
    ago = max(int((now - reading.measured_at).total_seconds()), 0)
    skew = timedelta(seconds=reading.skew_seconds)
    return TimeSource(reading.against, reading.measured_at - skew, reading.measured_at,
                      who=f"{reading.who} (measured {ago}s ago)")


MISSING = "does not exist yet"


# --- disk ----------------------------------------------------------------------------------

def observe_disks(settings: Settings) -> list[DiskObservation]:
    """Free space where the database (SQLite) and the log file live, one
    observation per file system; the working directory when neither is local."""
    places: list[tuple[str, Path]] = []
    parsed = database_url(settings.database.url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        places.append(("database", Path(parsed.database).resolve().parent))
    if settings.logging.file:
        places.append(("log file", Path(settings.logging.file).resolve().parent))
    if not places:
        places.append(("working directory", Path.cwd()))
    return _one_per_device(places)


def _one_per_device(places: list[tuple[str, Path]]) -> list[DiskObservation]:
    seen: dict[int, DiskObservation] = {}
    for label, path in places:
        existing = _existing(path)
        device = os.stat(existing).st_dev
        if device in seen:
            seen[device] = DiskObservation(f"{seen[device].label}, {label}",
                                           seen[device].path, seen[device].free,
                                           seen[device].total)
            continue
        usage = shutil.disk_usage(existing)
        seen[device] = DiskObservation(label, str(existing), usage.free, usage.total)
    return list(seen.values())


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
