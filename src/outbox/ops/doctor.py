"""`outbox doctor`: look at the database, the disk, every relay, the clock
and the queue, and report each as a check (`checks.py` decides the verdicts).

Relays are probed with `delivery.transport.probe`, the same session setup
real deliveries use (connect, greeting, EHLO, STARTTLS, AUTH), then QUIT:
no mail is sent. Nothing is written: a database that is missing or not
migrated is reported, not created.

Clock skew has two possible sources, both used when present: a relay
greeting that carries a date, and the PostgreSQL server's clock. SQLite's
clock is this machine's, so with SQLite and date-less greetings the check
says it had nothing to compare with.
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
from outbox.delivery.transport import probe
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
    greeting_time,
    queue_checks,
    relay_checks,
    relay_mark_check,
)
from outbox.store.base import RelayAuth, Store
from outbox.store.factory import database_url, open_store

PROBE_TIMEOUT = timedelta(seconds=10)  # doctor answers fast even when a relay does not
DNS_TIMEOUT = 10.0
DATABASE_FIX = ("Check [database] url, that the database server runs and that this machine may "
                "connect to it.")

Clock = Callable[[], datetime]


async def run_doctor(settings: Settings, *, clock: Clock = utcnow) -> Report:
    """Every check, in this order: database, disk, each relay, clock, queue."""
    database, relays = await asyncio.gather(
        inspect_database(settings, clock),
        asyncio.gather(*(observe_relay(r, settings.delivery, clock) for r in settings.relays)))
    checks = [*database.checks,
              *(disk_check(d, settings.doctor.min_free_disk) for d in observe_disks(settings))]
    checks += all_relay_checks(settings, [observed for observed, _ in relays], database, clock())
    sources = [s for _, s in relays if s is not None] + database.time_sources
    checks.append(clock_check(sources, settings.doctor.max_clock_skew))
    if database.queue is not None:
        checks += queue_checks(database.queue)
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
    return checks


# --- relays -----------------------------------------------------------------------------

async def observe_relay(relay: RelaySettings, delivery: DeliverySettings,
                        clock: Clock) -> tuple[RelayObservation, TimeSource | None]:
    addresses, error = await resolve(relay.host, relay.port)
    if error:
        return RelayObservation(relay, dns_error=error), None
    started = clock()
    result = await probe(relay, quick(delivery))
    greeting = result.info.greeting
    their_time = greeting_time(greeting.text) if greeting else None
    source = (TimeSource(f"relay {relay.name}'s greeting", their_time, started)
              if their_time is not None else None)
    return RelayObservation(relay, addresses, probe=result), source


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


async def inspect_database(settings: Settings, clock: Clock) -> DatabaseState:
    url = settings.database.url
    missing = missing_sqlite_file(url)
    if missing:
        return DatabaseState([database_failure(f"{missing} does not exist yet", START_ONCE)])
    try:
        store = await open_store(url)
    except OutboxError as exc:
        return DatabaseState([database_failure(exc.message, DATABASE_FIX)])
    try:
        return await read_database(store, settings, clock)
    except OutboxError as exc:
        return DatabaseState([database_failure(exc.message, DATABASE_FIX)])
    finally:
        await store.close()


async def read_database(store: Store, settings: Settings, clock: Clock) -> DatabaseState:
    before = clock()
    info = await store.describe_database()
    our_time = before + (clock() - before) / 2
    state = DatabaseState(database_checks(info, safe_url(settings.database.url)))
    if info.server_time is not None:
        state.time_sources.append(TimeSource("the database server", info.server_time, our_time))
    if info.is_migrated:
        state.queue = QueueObservation(await store.stats(), await store.list_alerts(True),
                                       clock(), settings.alerts, settings.doctor)
        state.relay_marks = {mark.relay: mark for mark in await store.relay_states()}
    return state


def missing_sqlite_file(url: str) -> str:
    """The SQLite file's path when it does not exist (opening would create it)."""
    parsed = database_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return ""
    return "" if Path(parsed.database).exists() else parsed.database


def safe_url(url: str) -> str:
    return database_url(url).render_as_string(hide_password=True)


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
