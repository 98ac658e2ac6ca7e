"""Long-running processes: `outbox serve` (API + UI + workers, the SMTP submission
listener when `[submission] bind` is set, the bounce listener when `[bounces] bind` is
set, the IMAP bounce poller when `[bounces.imap] host` is), `outbox worker` and
`outbox submission`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
from pathlib import Path

import structlog

from outbox.config import ServerSettings, Settings
from outbox.errors import ConfigError, StorageError
from outbox.event_loop import loop_name
from outbox.intake import BounceListener, bind_bounce_socket
from outbox.listening import listen
from outbox.niceness import run_in_the_background
from outbox.runtime import heap
from outbox.runtime.children import (
    BACKLOG_ENV,
    HEALTH_ENV,
    PARENT_ENV,
    SESSIONS_ENV,
    DeliveryProcesses,
    InProcessDelivery,
    mark_running,
    report_health,
    shared_sessions,
    usable_cores,
    watch_parent,
)
from outbox.runtime.presence import Presence
from outbox.service import Outbox
from outbox.store.urls import missing_sqlite_file, safe_url
from outbox.submission import SubmissionListener, bind_socket, tls_context
from outbox.turns import LARGE
from outbox.worker.loop import new_owner_id
from outbox.worker.policy import recovery_policy
from outbox.worker.sweeper import Sweeper

log = structlog.get_logger("outbox.runtime")


def bind_listener(server: ServerSettings) -> socket.socket:
    """The API's listening socket, bound now so that a taken port is one clear line."""
    return listen("server", server.bind, server.host, server.port, backlog=2048)


def _on_stop_signals(callback: object) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback)  # type: ignore[arg-type]


async def run_worker_process(settings: Settings) -> None:
    health = os.environ.get(HEALTH_ENV, "")  # a delivery process of `outbox serve`
    if health:
        mark_running(Path(health))
    outbox = await Outbox.open(  # on SQLite, its writer thread starts here
        settings, starting=None if health else "outbox worker")
    outbox.store.liveness.describe_process(
        "outbox serve's delivery process" if health else "outbox worker")
    # A delivery process is covered by serve's presence; `outbox worker` needs its own
    # before its webhook sender starts (and refuses while a restore runs).
    presence = None if health else await _take_presence(outbox, "outbox worker", [])
    if health:
        # Serve's requests first (outbox.niceness), from this thread and those it starts
        # from now on: SQLite's writer thread keeps serve's priority.
        run_in_the_background()
    worker = outbox.start_delivery(for_backlogs=os.environ.get(BACKLOG_ENV) == "1",
                                   shared=shared_sessions(os.environ.get(SESSIONS_ENV, "")))
    dispatcher = outbox.start_webhooks()  # every node helps post event webhooks
    watchers: list[asyncio.Task[None]] = []

    def stop() -> None:
        worker.stop()
        dispatcher.stop()
        for watcher in watchers:  # nothing but the worker's own work left at its close
            watcher.cancel()

    _on_stop_signals(stop)
    log.info("worker started", owner=worker.owner, relays=list(worker.relays),
             for_backlogs=worker.for_backlogs, event_loop=loop_name())
    webhooks_task = asyncio.create_task(dispatcher.run())
    parent = os.environ.get(PARENT_ENV, "")  # a delivery process of `outbox serve`
    if parent.isdigit():
        watchers.append(asyncio.create_task(watch_parent(int(parent), stop)))
    if health:  # serve's /healthz repeats it
        watchers.append(asyncio.create_task(report_health(outbox, Path(health),
                                                          worker.recovered)))
    heap.settle()
    try:
        await worker.run()
    finally:
        dispatcher.stop()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(webhooks_task, *watchers, return_exceptions=True)
        if presence is not None:
            await presence.release()
        await outbox.close()
        log.info("worker stopped", owner=worker.owner)


async def run_serve_process(settings: Settings, config: str | None = None) -> None:
    """`config`: the --config given, for delivery processes (`[delivery] processes`)."""
    # Ports in use are refused before anything starts.
    listener = bind_listener(settings.server)
    sockets: list[socket.socket] = [listener]
    try:
        smtp_socket = _bind_submission(settings)
        sockets += [smtp_socket] if smtp_socket is not None else []
        bounce_socket = bind_bounce_socket(settings.bounces) if settings.bounces.bind else None
        sockets += [bounce_socket] if bounce_socket is not None else []
        outbox = await Outbox.open(settings, starting="outbox serve")
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    presence = await _take_presence(outbox, "outbox serve", sockets)
    if settings.limits.max_recipients > LARGE:  # else no message is large enough for it
        outbox.messages.planning.start()
    delivery = await _start_delivery(outbox, config)
    dispatcher = outbox.start_webhooks()
    from outbox.runtime.http import Server, http_app

    server = Server(http_app(outbox), settings.server)

    def stop() -> None:
        server.should_exit = True
        delivery.stop()
        dispatcher.stop()

    _on_stop_signals(stop)
    log.info("outbox serving", bind=settings.server.bind, database=safe_url(settings.database.url),
             relays=[relay.name for relay in settings.relays], event_loop=loop_name(),
             **delivery.described)
    submission: SubmissionListener | None = None
    bounces = BounceListener(outbox, bounce_socket) if bounce_socket is not None else None
    imap_task = asyncio.create_task(outbox.bounces.poll_periodically())  # [bounces.imap]
    alerts_task = asyncio.create_task(outbox.alerts.run())
    contacts_task = asyncio.create_task(outbox.contacts.sync_periodically())  # [ldap]
    webhooks_task = asyncio.create_task(dispatcher.run())
    try:
        submission = await _start_submission(outbox, smtp_socket)
        if bounces is not None:
            await bounces.start()
        heap.settle()
        await server.serve(sockets=[listener])
    finally:
        if submission is not None:
            await submission.close(SUBMISSION_GRACE)
        if bounces is not None:
            await bounces.close()
        delivery.stop()
        dispatcher.stop()
        alerts_task.cancel()
        contacts_task.cancel()
        imap_task.cancel()
        await asyncio.gather(alerts_task, contacts_task, webhooks_task, imap_task,
                             return_exceptions=True)
        await delivery.finished()
        await presence.release()
        await outbox.close()
        log.info("outbox stopped")


async def _take_presence(outbox: Outbox, what: str, sockets: list[socket.socket]) -> Presence:
    """This process's liveness lock, before it acts on the database (`runtime.presence`);
    none to be had: nothing starts."""
    try:
        return await Presence.take(outbox, what)
    except BaseException:
        await outbox.close()
        for sock in sockets:
            sock.close()
        raise


async def _start_delivery(outbox: Outbox,
                          config: str | None) -> InProcessDelivery | DeliveryProcesses:
    count = outbox.settings.delivery.processes_for(usable_cores())
    if count:
        # Recovery here too, and before the delivery processes start: each takes a
        # second or two (a new interpreter's imports), mail a killed process left in
        # `sending` should not wait for it, and on a busy machine their imports would
        # slow this sweep down.
        await _recover(outbox)
        processes = DeliveryProcesses(outbox.settings, config, outbox.loops, count)
        processes.start()
        return processes
    delivery = InProcessDelivery(outbox.start_delivery())
    # Recovery first: the HTTP app's imports and set-up take a second or more of this
    # thread, and mail a killed process left in `sending` should not wait for them.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(delivery.worker.recovered.wait(), RECOVERY_WAIT)
    return delivery


async def _recover(outbox: Outbox) -> None:
    """One sweep, as a worker's at its start; one that fails is left to the delivery
    processes' own sweeps."""
    sweeper = Sweeper(outbox.store, new_owner_id(), recovery_policy(outbox.settings),
                      outbox.clock, random.Random())
    try:
        await asyncio.wait_for(sweeper.sweep(), RECOVERY_WAIT)
    except Exception as exc:
        log.warning("start-up recovery failed; the delivery processes will retry",
                    error=str(exc))


RECOVERY_WAIT = 5.0  # seconds serve waits for start-up recovery (a database still starting)
SUBMISSION_GRACE = 5.0  # seconds a stop waits for SMTP messages under way (as uvicorn does)


def _bind_submission(settings: Settings) -> socket.socket | None:
    """The SMTP submission socket, with its certificate checked, before anything starts."""
    if not settings.submission.bind:
        return None
    tls_context(settings.submission)  # a certificate that cannot be used: one line now
    return bind_socket(settings.submission)


async def _start_submission(outbox: Outbox,
                            sock: socket.socket | None) -> SubmissionListener | None:
    if sock is None:
        return None
    listener = SubmissionListener(outbox, sock)
    await listener.start()
    return listener


async def run_submission_process(settings: Settings) -> None:
    """The SMTP submission listener alone, for extra nodes: it neither delivers nor
    creates or migrates the database (`outbox serve` or `outbox worker` do)."""
    if not settings.submission.bind:
        raise ConfigError("submission.bind: empty, so there is no listener to run",
                          hint="set [submission] bind, e.g. 0.0.0.0:587")
    smtp_socket = _bind_submission(settings)
    assert smtp_socket is not None
    try:
        outbox = await _open_existing(settings)
    except BaseException:
        smtp_socket.close()
        raise
    presence = await _take_presence(outbox, "outbox submission", [smtp_socket])
    listener = SubmissionListener(outbox, smtp_socket)
    stopped = asyncio.Event()
    _on_stop_signals(stopped.set)
    try:
        await listener.start()
        heap.settle()
        await stopped.wait()
    finally:
        await listener.close(SUBMISSION_GRACE)
        await presence.release()
        await outbox.close()
        log.info("smtp submission stopped")


async def _open_existing(settings: Settings) -> Outbox:
    missing = missing_sqlite_file(settings.database.url)
    if missing:
        raise StorageError(f"the database {missing} does not exist yet",
                           hint="start `outbox serve` or `outbox worker` once: they create it")
    outbox = await Outbox.open(settings, migrate=False)
    if not (await outbox.store.describe_database()).is_migrated:
        await outbox.close()
        raise StorageError(f"the database {safe_url(settings.database.url)} is not migrated",
                           hint="start `outbox serve` or `outbox worker` once: they migrate it")
    return outbox
