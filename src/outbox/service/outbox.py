"""The composition root: `Outbox.open(settings)` builds everything once.

Every entry point (HTTP API, web UI, CLI, SMTP submission) and every
long-running process (`outbox serve`, `outbox worker`) gets its parts from
one `Outbox`; nothing outside this package builds a store, a blob store, a
routing table, relay gates or a worker.

    outbox = await Outbox.open(settings)
    outbox.messages    submit, get, list, attempts, retry, cancel, resend
    outbox.relays      relay states, credentials, login test
    outbox.keys        API keys: create, list, revoke, authenticate
    outbox.contacts    the address book, import, directory sync, autocomplete
    outbox.files       uploads and download links
    outbox.alerts      the alert engine and the alerts it raised
    outbox.webhooks    event webhook endpoints: add, list, remove, log, redeliver
    outbox.rate_limits per-key requests and messages a minute
    outbox.suppressions the suppression list, checked at submit
    outbox.bounces     VERP return paths, and what a bounce that came back changes
    outbox.unsubscribes one-click unsubscribe links (RFC 8058) and their POSTs
    outbox.health      one snapshot for metrics, alerts, doctor; liveness for /healthz
    outbox.users       web UI users: create, sign in (throttled), session key
    worker = outbox.start_delivery()   # this process delivers too
    dispatcher = outbox.start_webhooks()  # ... and posts event webhooks
    await outbox.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from outbox.blobs import BlobStore, open_blob_store
from outbox.clock import DatabaseClock, utcnow
from outbox.config import Settings
from outbox.delivery.credentials import CredentialVault
from outbox.delivery.dkim import DkimSigner
from outbox.errors import Conflict, StorageError
from outbox.observability import DeliveryMetrics
from outbox.service.alerts import AlertEngine
from outbox.service.bounces import Bounces
from outbox.service.contacts import ContactBook
from outbox.service.files import AttachmentFiles
from outbox.service.health import Health
from outbox.service.keys import ApiKeys
from outbox.service.messages import Messages
from outbox.service.ratelimits import RateLimits
from outbox.service.relays import Relays
from outbox.service.rules import internal_policy, limits, routing_table
from outbox.service.suppressions import Suppressions
from outbox.service.unsubscribe import Unsubscribes
from outbox.service.users import UiUsers
from outbox.service.webhooks import Webhooks
from outbox.store.base import Message, Store
from outbox.store.factory import open_store
from outbox.store.urls import safe_url
from outbox.supervision import Loops
from outbox.worker.policy import recovery_policy

if TYPE_CHECKING:
    # The worker, its SMTP sessions and the webhook dispatcher (aiosmtplib, httpx) load
    # only in the processes that start them, not in every command that opens the service.
    from outbox.delivery.body import MessageBody
    from outbox.delivery.gate import RelayGates
    from outbox.delivery.slots import SharedSessions
    from outbox.service.webhook_dispatch import Dispatcher
    from outbox.worker.loop import Worker


# Seconds a starting process waits for a restore to end before it refuses (as long as
# runtime.presence's TAKE_FOR, which makes the check that counts, under its lock).
RESTORE_WAIT = 5.0


class Outbox:
    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], datetime] = utcnow, blobs: BlobStore | None = None,
                 loops: Loops | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.loops = loops or Loops()
        self.blobs = blobs or open_blob_store(settings, store)
        self.routing = routing_table(settings)
        self.policy = internal_policy(settings)
        self.vault = CredentialVault(settings, store, clock=clock)
        self.contacts = ContactBook(store.contacts, settings.ldap, clock=clock)
        self.files = AttachmentFiles(settings, store, self.blobs, clock=clock)
        self.suppressions = Suppressions(settings, store, clock=clock)
        self.bounces = Bounces(settings, store, clock=clock, loops=self.loops)
        self.unsubscribes = Unsubscribes(settings, store, self.suppressions, clock=clock)
        self.messages = Messages(settings, store, files=self.files, contacts=self.contacts,
                                 routing=self.routing, limits=limits(settings),
                                 policy=self.policy, recovery=recovery_policy(settings),
                                 suppressions=self.suppressions,
                                 unsubscribes=self.unsubscribes, clock=clock)
        self.keys = ApiKeys(settings, store, clock=clock)
        self.relays = Relays(settings, store, self.vault, clock=clock)
        self.health = Health(settings, store, self.loops, clock=clock)
        self.alerts = AlertEngine(store, settings.alerts, self.health, clock=clock)
        self.delivery_metrics = DeliveryMetrics(self.loops.registry)
        self.webhooks = Webhooks(settings, store, clock=clock, box=self.vault.box)
        self.rate_limits = RateLimits(store.rate_limits, clock=clock)
        self.dkim = DkimSigner(settings.dkim)
        self.users = UiUsers(settings, store, clock=clock)
        self._gates: RelayGates | None = None
        self._dispatcher: Dispatcher | None = None

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = True,
                   starting: str | None = None) -> Outbox:
        """The service over the configured database, on the database's clock.
        `migrate` creates or upgrades the schema and checks that the database takes
        writes (only `outbox serve` and `outbox worker` do). `starting`: the process
        that opens it to run (`outbox serve`), refused, naming the restore,
        while one replaces the database: the write check and the migration would wait
        on the restore's transaction, silently, and on SQLite fail after its busy
        timeout (a stranger pass). It waits `RESTORE_WAIT` for the restore to end first.
        `runtime.presence` makes the check that counts, under its lock; this one only
        answers sooner."""
        try:
            store = await open_store(settings.database.url,
                                     pool_size=settings.database.pool_size)
        except StorageError as exc:
            if migrate:  # serve and worker write: say so, not just "cannot open"
                raise _not_writable(settings, exc) from exc
            raise
        try:
            if starting:
                await _wait_out_a_restore(store, settings, starting)
            if migrate:
                await _check_writable(store, settings)
                await store.migrate()
            clock = DatabaseClock()
            before = clock.wall()
            clock.observe(await store.database_time(), before, clock.wall())
        except BaseException:
            await store.close()
            raise
        return cls(settings, store, clock=clock)

    def start_delivery(self, *, for_backlogs: bool = False,
                       shared: SharedSessions | None = None) -> Worker:
        """The worker that delivers from this process (run it with `Worker.run`);
        `for_backlogs`: one that claims only while a backlog waits (worker/loop.py);
        `shared`: relay sessions counted with serve's other delivery processes."""
        from outbox.delivery.gate import RelayGates
        from outbox.worker.loop import Worker

        self._gates = RelayGates(self.settings, self.store, self.vault, clock=self.clock,
                                 shared=shared)
        return Worker(self.store, self.settings, self._gates, blobs=self.blobs,
                      clock=self.clock, metrics=self.delivery_metrics, loops=self.loops,
                      on_verdict=self._gates.after_verdict,
                      return_path=self.bounces.return_path if self.bounces.enabled else None,
                      sign=self._sign if self.dkim.keys else None, for_backlogs=for_backlogs)

    async def _sign(self, body: bytes | MessageBody, message: Message) -> bytes | MessageBody:
        """DKIM signatures of the From domain's keys in front of the wire form."""
        return await self.dkim.sign(body, message.content.from_, self.clock().timestamp())

    def start_webhooks(self) -> Dispatcher:
        """The dispatcher that posts event webhooks from this process (run it with
        `Dispatcher.run`); one per process."""
        if self._dispatcher is None:
            from outbox.service.webhook_dispatch import Dispatcher

            self._dispatcher = Dispatcher(self.settings, self.store, self.webhooks, self.loops,
                                          clock=self.clock)
        return self._dispatcher

    async def close(self) -> None:
        if self._dispatcher is not None:
            await self._dispatcher.aclose()
        if self._gates is not None:
            await self._gates.aclose()
        await self.alerts.aclose()
        await self.contacts.aclose()
        await asyncio.to_thread(self.messages.planning.close)
        await self.store.close()


async def _wait_out_a_restore(store: Store, settings: Settings, what: str) -> None:
    """Until no restore replaces the database, for `RESTORE_WAIT` at most (one that is
    over by then is waited out, as `runtime.presence` does); then `restoring`."""
    # Named first: on PostgreSQL the look opens the session its lock will use.
    store.liveness.describe_process(what)
    deadline = asyncio.get_running_loop().time() + RESTORE_WAIT
    while (restore := await store.liveness.restore_holder()) is not None:
        if asyncio.get_running_loop().time() >= deadline:
            raise restoring(settings, restore, what)
        await asyncio.sleep(0.1)


def restoring(settings: Settings, restore: str, what: str) -> Conflict:
    """`what` (`outbox serve`) refused while `restore` (`outbox restore, pid 12 on h`)
    replaces the database."""
    return Conflict(f"a restore is replacing the database {safe_url(settings.database.url)} "
                    f"({restore}): {what} did not start",
                    hint=f"start `{what}` again once the restore has finished")


async def _check_writable(store: Store, settings: Settings) -> None:
    """Refuse to start on a database that takes no writes: every submit would fail
    while the process looked healthy."""
    try:
        await store.check_writable()
    except StorageError as exc:
        raise _not_writable(settings, exc) from exc


def _not_writable(settings: Settings, exc: StorageError) -> StorageError:
    cause = exc.__cause__
    reason = cause.message if isinstance(cause, StorageError) else exc.message
    where = safe_url(settings.database.url)
    return StorageError(f"the database {where} cannot be written: {reason}",
                        hint="the database file and its directory must be writable by this "
                             "user (SQLite creates -wal and -shm files beside it) on a disk that "
                             "is neither full nor read-only; on PostgreSQL, [database] url must "
                             "name the primary server")
