"""The delivery loop: claim due messages, deliver, persist the verdict.

One `Worker` per process (inside `outbox serve`, or standalone as `outbox worker`). It
takes a liveness lock for its lifetime (`store.liveness`), recovers what dead processes
left behind before it claims anything, claims in batches under a lease, keeps at most
`delivery.concurrency` attempts in flight (worker/attempt.py), at most a relay's share
of them for one relay (worker/relay_room.py), and about `HELD_CONTENT` of their content,
renews the leases of the attempts that are still running, and sweeps every
`sweep_interval`.

A worker `for_backlogs` (serve's delivery processes after the first) claims only while a
full `batch_size` of messages has been due for `BACKLOG_AGE`: the first process keeps up
with mail as it arrives on its own, and a second one claiming beside it split the claims
into smaller ones and cost serve's requests their CPU (issue 15). A full batch due at the
instant it looked was not enough: over HTTP on PostgreSQL at 1,400 msg/s the first
process's next claim was often milliseconds away, the second joined, and the two took a
fifth more CPU a message (bench/cpu_split.py --path http-lean --backend postgres, two
interleaved pairs: 1,505 and 1,482 msg/s against 1,399 and 1,375). It looks every
`poll_interval`, not woken by new mail.

While a backlog lasts (the last claim came back full), claims ride with results: the
transaction that writes a batch of results also claims as many messages as the finished
attempts make room for (worker/recorder.py), instead of a claim of its own after them;
and a claim of its own takes the results waiting to be written along.

Every loop is supervised (outbox.supervision): an error from the database or anything
else is logged once per streak, counted, backed off and retried; it never ends delivery,
and `/healthz` reports it meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime, timedelta

import structlog

from outbox.blobs import BlobStore
from outbox.clock import utcnow
from outbox.config import DeliverySettings, Settings
from outbox.delivery.mime_writer import MimeWriter
from outbox.observability import DeliveryMetrics, log_context
from outbox.store.base import Store
from outbox.store.urls import database_url
from outbox.store.values import Claim
from outbox.supervision import LoopMonitor, Loops, every, sleep_unless_stopped, supervise
from outbox.worker import upkeep
from outbox.worker.attempt import Attempt, AttemptTools, Deliverer, OnVerdict, ReturnPath, Sign
from outbox.worker.policy import recovery_policy, retry_policy
from outbox.worker.recorder import ClaimAsk, Recorder
from outbox.worker.relay_room import Busy, Fruitless, RelayRoom, narrowing
from outbox.worker.retention import Purger, retention_policy
from outbox.worker.sweeper import Sweeper

log = structlog.get_logger("outbox.worker")

BACKLOG_AGE = timedelta(seconds=0.5)  # unclaimed this long, due mail is a backlog
LIVENESS_EVERY = 1.0  # seconds between checks that this process's liveness lock is held
# Characters of content (text, HTML, embedded files) the attempts of one worker hold at
# most, give or take one claim: `concurrency` messages of max_message_size each would be
# gigabytes. Files in the blob store are streamed, not held.
HELD_CONTENT = 256 * 2**20
RELEASE_EVERY = 60.0  # seconds between looks for mail a cut-short relay release left held
STATISTICS_EVERY = 1.0  # seconds between looks for tables grown past their statistics


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def affordable(held: int, largest: int, budget: int) -> int:
    """How many messages the next claim may take: as many as fit in what is left of
    `budget` were each as large as `largest` (at least one; a claim of mail larger than
    its predecessor's can go past the budget once)."""
    return max(1, (budget - held) // max(largest, 1))


class Worker:
    def __init__(self, store: Store, settings: Settings, relays: Mapping[str, Deliverer], *,
                 blobs: BlobStore, clock: Callable[[], datetime] = utcnow,
                 rng: random.Random | None = None, owner: str | None = None,
                 on_verdict: OnVerdict | None = None, metrics: DeliveryMetrics | None = None,
                 loops: Loops | None = None, return_path: ReturnPath | None = None,
                 sign: Sign | None = None, for_backlogs: bool = False):
        self.store = store
        self.blobs = blobs
        self.settings = settings
        self.relays = relays
        self.for_backlogs = for_backlogs
        self.loops = loops or Loops()
        self.owner = owner or new_owner_id()
        self.policy = retry_policy(settings)
        self._clock = clock
        self._rng = rng or random.Random()
        self._recorder = Recorder(store.messages, ride=self)
        self._tools = AttemptTools(
            store=store.messages, relays=relays, writer=MimeWriter(blobs),
            recorder=self._recorder, policy=self.policy, recovery=recovery_policy(settings),
            delivery=settings.delivery, clock=clock, rng=self._rng, metrics=metrics,
            on_verdict=on_verdict, recording=self.loops.register("record results"),
            return_path=return_path, sign=sign)
        self.sweeper = Sweeper(store, self.owner, self._tools.recovery, clock, self._rng)
        self.purger = Purger(store.retention, retention_policy(settings), clock)
        self._inflight: dict[asyncio.Task[None], Claim] = {}  # attempt → its claim
        self._held = 0  # their contents' held_size, kept as they start and end (issue 15)
        # The last claim's largest content; before any claim, the largest there may be.
        self._largest = settings.limits.max_message_size
        self._slot_free = asyncio.Event()
        # Each relay's share of the attempts (worker/relay_room.py), and a wake-up for
        # a claim loop that waits while a busy relay has room again.
        self._relay_room = RelayRoom(settings.relays, self._delivery.concurrency,
                                     narrowed=narrowing(relays))
        self._fruitless = Fruitless(self._delivery.poll_interval.total_seconds())
        self._relay_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        # The last claim came back full: more mail is likely due, so the recorder claims
        # with each batch of results (recorder.Ride). Slots promised to claims under way.
        self._backlog, self._promised = False, 0
        self._handed: set[str] = set()  # claims in flight whose attempt has its result
        # Set once start-up recovery has run (or the worker ended without it): `serve`
        # waits for it before building the HTTP app, so mail a dead process left in
        # `sending` is requeued first, not after a second of imports.
        self.recovered = asyncio.Event()

    @property
    def _delivery(self) -> DeliverySettings:
        return self.settings.delivery

    async def run(self) -> None:
        """Until `stop()`: then drain in-flight attempts within the grace period and
        give back what is left."""
        claiming = self.loops.register("claim")  # "not running" until it claims
        if not await self._take_liveness_lock():
            self.recovered.set()
            return
        recording = self._tools.recording
        if recording is not None:
            recording.started()
        try:
            await self._start_up_sweep()
            self.recovered.set()
            await self._run_loops(claiming)
        finally:
            if recording is not None:
                recording.stopped()
            await self._give_back_leftovers()
            await self.store.liveness.unregister(self.owner)

    def stop(self) -> None:
        self._stopping.set()
        self._slot_free.set()

    async def sweep_stale(self) -> list[str]:
        return await self.sweeper.sweep()

    async def _take_liveness_lock(self) -> bool:
        """Before any claim: without its lock nobody could tell this process died.
        Tried until it works (the database may be starting too) or `stop()`."""
        monitor = self.loops.register("liveness", max_backoff=5.0)
        while not self._stopping.is_set():
            try:
                await self.store.liveness.register(self.owner)
            except Exception as exc:
                await sleep_unless_stopped(monitor.failed(exc), self._stopping)
                continue
            monitor.succeeded()
            return True
        return False

    async def _start_up_sweep(self) -> None:
        """Before claiming: what dead processes left in `sending` goes back. An
        error here does not stop the worker; the sweep loop tries again."""
        try:
            await self.sweeper.sweep()
        except Exception as exc:
            log.warning("start-up recovery failed; the sweep loop will retry", error=str(exc))

    async def _run_loops(self, claiming: LoopMonitor) -> None:
        stop = self._stopping
        lease = self._delivery.lease.total_seconds()
        collect = self.settings.storage.collect_every.total_seconds()
        helpers = [
            self._supervised("renew", every(max(lease / 3, 0.2), self._renew_leases)),
            self._supervised("sweep", self._sweep_after_the_start_up_one()),
            self._supervised("liveness", every(LIVENESS_EVERY, self._keep_liveness),
                             max_backoff=LIVENESS_EVERY),
            self._supervised("collect", every(collect, lambda: upkeep.collect_blobs(
                self.blobs, self._clock)), critical=False),
            self._supervised("retention", self.purger.round, critical=False),
            self._supervised("release", every(RELEASE_EVERY, lambda: upkeep.release_left_held(
                self.store, self.relays, self._clock)), critical=False),
            asyncio.create_task(self._recorder.run()),
        ]
        if database_url(self.settings.database.url).get_backend_name() == "postgresql":
            # SQLite keeps no generic plans: the loop would only hop to a reader thread.
            helpers.append(self._supervised("statistics", every(
                STATISTICS_EVERY, lambda: upkeep.refresh_statistics(self.store)),
                critical=False))
        try:
            await supervise(claiming, self._claim_round, stop=stop)
            await self._drain_inflight()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def _sweep_after_the_start_up_one(self) -> Callable[[], Awaitable[float]]:
        """The sweep loop's rounds, the first one `sweep_interval` after the start-up
        sweep rather than at once: that one has just run, and a second sweep racing the
        HTTP app's start would judge claims after `/healthz` already said ok."""
        interval = self._delivery.sweep_interval.total_seconds()
        sweep = every(interval, self.sweeper.sweep)
        started = False

        async def round() -> float:
            nonlocal started
            if not started:
                started = True
                return interval
            return await sweep()

        return round

    def _supervised(self, name: str, round: Callable[[], Awaitable[float | None]], *,
                    critical: bool = True, max_backoff: float = 30.0) -> asyncio.Task[None]:
        monitor = self.loops.register(name, critical=critical, max_backoff=max_backoff)
        return asyncio.create_task(supervise(monitor, round))

    # -- claiming ------------------------------------------------------------------------

    def _room(self, done: Collection[str] = ()) -> tuple[int, Busy]:
        """How many messages the next claim may take (0: none), and the relays whose
        mail it skips (worker/relay_room.py), with the attempts of the claims `done`
        counted as finished for their slots. Their content still counts as held until
        they end; so does that of the claims under way, were each of their messages as
        large as the last claim's largest: a claim of the loop and one riding with
        results can be under way at once, and each must leave room for the other
        (issue 15)."""
        free = self._delivery.concurrency - len(self._inflight) + len(done) - self._promised
        held = self._held + self._promised * self._largest
        if free <= 0 or held >= HELD_CONTENT:
            return 0, frozenset()
        relay_limit, busy = self._relay_room.room(done, self._promised, free)
        limit = min(free, self._delivery.batch_size,
                    affordable(held, self._largest, HELD_CONTENT))
        return (limit if relay_limit is None else min(limit, relay_limit)), busy

    async def _claim_round(self) -> None:
        self._relay_freed.clear()
        asked, busy = self._room()
        if not asked:
            self._slot_free.clear()
            await self._slot_free.wait()
            return
        if not self._fruitless.may_claim(busy):
            await self._idle()
            return
        now = self._clock()
        batch = self._delivery.batch_size
        if self.for_backlogs:
            if await self.store.messages.count_due(now - BACKLOG_AGE, batch) < batch:
                await self._idle()
                return
            asked, busy = self._room()  # a claim with results may have taken room meanwhile
            if not asked:
                return
        self._promised += asked
        claims: list[Claim] = []
        try:
            claims = await self._recorder.claim(
                ClaimAsk(self.owner, now, now + self._delivery.lease, asked, busy=busy))
        finally:
            self._promised -= asked
            self._begin(claims, asked, busy)
        # Fewer than asked: nothing else was due (or another worker holds it). Claiming
        # again at once would cost a write transaction that finds nothing, once per
        # message when mail trickles in; new mail wakes the wait, due retries end it by
        # poll_interval, as when idle.
        if len(claims) < asked:
            await self._idle()

    async def _idle(self) -> None:
        poll = self._delivery.poll_interval.total_seconds()
        waiter = asyncio.create_task(asyncio.sleep(poll) if self.for_backlogs
                                     else self.store.messages.wait_for_new(poll))
        stopping = asyncio.create_task(self._stopping.wait())
        freed = asyncio.create_task(self._relay_freed.wait())
        await asyncio.wait({waiter, stopping, freed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, stopping, freed):
            task.cancel()

    def handed(self, token: str) -> None:
        """recorder.Ride: from now on this claim's attempt counts as done."""
        self._handed.add(token)

    def ask(self) -> ClaimAsk | None:
        """recorder.Ride: while there is a backlog, as many messages as there are free
        slots. An attempt that has handed its result over counts as done: for a moment
        the new ones run beside its last steps."""
        if not self._backlog or self._stopping.is_set():
            return None
        limit, busy = self._room(self._handed)
        if not limit or not self._fruitless.may_claim(busy):
            return None
        self._promised += limit
        now = self._clock()
        # A worker for backlogs claims only while a full batch is due, here too.
        return ClaimAsk(self.owner, now, now + self._delivery.lease, limit,
                        at_least=self._delivery.batch_size if self.for_backlogs else 0,
                        busy=busy)

    def took(self, ask: ClaimAsk, claims: list[Claim]) -> None:
        """recorder.Ride: the claims that came with a batch of results."""
        self._promised -= ask.limit
        self._begin(claims, ask.limit, ask.busy)

    def _begin(self, claims: list[Claim], asked: int, busy: Busy) -> None:
        """Start the attempts of a claim of `asked` messages that skipped the mail of
        `busy` relays; a claim that came back full says more mail is likely due."""
        self._backlog = len(claims) >= asked
        if not self._backlog:
            self._fruitless.found_short(busy)
        if claims:
            self._largest = max(claim.message.content.held_size for claim in claims)
        for claim in claims:
            self._start(claim)

    def _start(self, claim: Claim) -> None:
        task = asyncio.create_task(self._attempt(claim))
        self._inflight[task] = claim
        self._held += claim.message.content.held_size
        self._relay_room.start(claim)
        task.add_done_callback(self._finished)

    async def _attempt(self, claim: Claim) -> None:
        """One attempt, its message bound to each log line it causes (in its own task)."""
        with log_context(message=claim.message.id, message_id=claim.message.message_id,
                         attempt=claim.attempt):
            await Attempt(claim, self._tools).run()

    def _finished(self, task: asyncio.Task[None]) -> None:
        claim = self._inflight.pop(task, None)
        if claim is not None:
            self._held -= claim.message.content.held_size
            self._handed.discard(claim.token)
            free = self._delivery.concurrency - len(self._inflight) - self._promised
            if self._relay_room.finish(claim.token, free):
                self._relay_freed.set()
        self._slot_free.set()

    # -- background rounds -----------------------------------------------------------------

    async def _renew_leases(self) -> None:
        """Only claims whose attempt still runs: an orphan is never kept alive."""
        tokens = {claim.token for claim in self._inflight.values()}
        if tokens:
            now = self._clock()
            await self.store.messages.renew_leases(self.owner, tokens,
                                                   now + self._delivery.lease)

    async def _keep_liveness(self) -> None:
        await self.store.liveness.keep(self.owner)

    # -- stopping --------------------------------------------------------------------------

    async def _drain_inflight(self) -> None:
        """Every attempt ends within the grace, those a claim riding with results (asked
        before the stop) starts meanwhile too: left running, they delivered after their
        claims went back to the queue."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._delivery.shutdown_grace.total_seconds()
        while self._inflight and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._inflight), timeout=left)
        if not (pending := set(self._inflight)):
            return
        for task in pending:
            task.cancel()
        log.warning("stopped with deliveries still running; they go back to the queue",
                    count=len(pending))
        await asyncio.wait(pending)

    async def _give_back_leftovers(self) -> None:
        """Claims this process still holds (attempts cut short at a stop) go back now,
        uncertain, instead of waiting for their lease."""
        try:
            given_back = await self.sweeper.give_back_own()
        except Exception as exc:
            log.warning("could not give back this worker's claims; their lease will lapse",
                        error=str(exc))
            return
        if given_back:
            log.warning("gave back claims of attempts cut short", count=len(given_back))

