"""The delivery loop: claim due messages, deliver, persist the verdict.

One `Worker` per process (inside `outbox serve` or standalone as
`outbox worker`). It claims in batches under a lease, keeps at most
`delivery.concurrency` deliveries in flight, renews its leases, and sweeps
expired leases of dead workers back into the queue (marked uncertain).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from structlog.contextvars import bound_contextvars

from outbox.blobs import BlobStore, open_blob_store
from outbox.clock import utcnow
from outbox.config import DeliverySettings, Settings
from outbox.core.classify import classify
from outbox.core.decide import AttemptContext, AttemptVerdict, decide_attempt
from outbox.core.model import Outcome, OutcomeKind
from outbox.core.report import Condition, DeliveryReport, SessionFailure, Stage
from outbox.core.retry import RetryPolicy
from outbox.delivery.body import MessageBody
from outbox.delivery.mime_writer import MimeWriter, PlannedBody
from outbox.errors import BodyUnavailable
from outbox.observability import DeliveryMetrics
from outbox.recorder import Recorder
from outbox.store.base import AttemptRecord, Claim, Recipient, Store

log = structlog.get_logger("outbox.worker")


class Deliverer(Protocol):
    """What the worker needs of a relay's session pool."""

    async def deliver(self, sender: str, recipients: Sequence[str],
                      message: bytes | MessageBody) -> DeliveryReport: ...

    async def aclose(self) -> None: ...


def retry_policy(settings: Settings) -> RetryPolicy:
    r = settings.retry
    return RetryPolicy(r.first_delay, r.max_delay, r.max_attempts, r.max_age)


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Worker:
    def __init__(self, store: Store, settings: Settings, pools: Mapping[str, Deliverer], *,
                 clock: Callable[[], datetime] = utcnow, rng: random.Random | None = None,
                 owner: str | None = None,
                 on_verdict: Callable[[Claim, AttemptVerdict], Awaitable[None]] | None = None,
                 metrics: DeliveryMetrics | None = None, blobs: BlobStore | None = None):
        self.store = store
        self.blobs = blobs or open_blob_store(settings, store)
        self._writer = MimeWriter(self.blobs)
        self.settings = settings
        self.pools = pools
        self.owner = owner or new_owner_id()
        self.policy = retry_policy(settings)
        self._clock = clock
        self._rng = rng or random.Random()
        self._recorder = Recorder(store)
        self._inflight: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._on_verdict = on_verdict
        self._metrics = metrics

    @property
    def _delivery(self) -> DeliverySettings:
        return self.settings.delivery

    async def run(self) -> None:
        """Until `stop()`: then drain in-flight deliveries within the grace period."""
        await self.sweep_stale()
        helpers = [asyncio.create_task(coro) for coro in
                   (self._recorder.run(), self._renew_leases(), self._sweep_periodically(),
                    self._collect_blobs_periodically())]
        try:
            await self._claim_loop()
            await self._drain_inflight()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()
        self._slot_free.set()

    async def sweep_stale(self) -> None:
        hold = self._delivery.on_uncertain == "hold"
        released = await self.store.release_stale(self._clock(), hold)
        if released:
            log.warning("recovered messages whose worker vanished; marked uncertain",
                        count=len(released), held=hold)

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            free = self._delivery.concurrency - len(self._inflight)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            now = self._clock()
            claims = await self.store.claim_due(self.owner, now, now + self._delivery.lease,
                                                min(free, self._delivery.batch_size))
            for claim in claims:
                self._start(claim)
            if not claims:
                await self._idle()

    async def _idle(self) -> None:
        waiter = asyncio.create_task(
            self.store.wait_for_new(self._delivery.poll_interval.total_seconds()))
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({waiter, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, stopping):
            task.cancel()

    def _start(self, claim: Claim) -> None:
        task = asyncio.create_task(self._deliver_logged(claim))
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slot_free.set()

    async def _drain_inflight(self) -> None:
        if not self._inflight:
            return
        grace = self._delivery.shutdown_grace.total_seconds()
        _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
        for task in pending:
            # Their leases lapse; the next sweep brings them back as uncertain.
            task.cancel()
        if pending:
            log.warning("stopped with deliveries still running; they will be retried",
                        count=len(pending))
            await asyncio.wait(pending)

    async def _deliver_logged(self, claim: Claim) -> None:
        """`deliver` with the message bound to every log line it causes (each
        delivery runs in its own task, so the binding stays with it)."""
        with bound_contextvars(message=claim.message.id, message_id=claim.message.message_id,
                               attempt=claim.attempt):
            try:
                await self.deliver(claim)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The lease will lapse and the sweep will retry; never kill the loop.
                log.exception("delivery crashed; the message will come back after its lease")

    async def deliver(self, claim: Claim) -> None:
        """One attempt: every pending recipient, grouped by relay."""
        message = claim.message
        data = await self._body(claim)
        outcomes: dict[str, Outcome] = {}
        transcripts: list[str] = []
        relays: list[str] = []
        for relay, recipients in _pending_by_relay(message.recipients).items():
            with bound_contextvars(relay=relay):
                report = await self._transmit_observed(relay, message.sender, recipients,
                                                       data, outcomes)
            transcripts.append(report.transcript)
            relays.append(relay)
        verdict = self._decide(claim, outcomes)
        await self._persist(claim, verdict, relays, transcripts)

    async def _transmit_observed(self, relay: str, sender: str, recipients: list[str],
                                 data: Body, outcomes: dict[str, Outcome]) -> DeliveryReport:
        """Transmit, classify into `outcomes`, then count and log what the relay said."""
        started = time.monotonic()
        report = await self._transmit(relay, sender, recipients, data)
        classified = classify(report)
        outcomes.update(classified)
        seconds = time.monotonic() - started
        results = Counter(outcome.kind.value for outcome in classified.values())
        if self._metrics is not None:
            self._metrics.observe(relay, results, seconds)
        problems = sorted({o.guidance for o in classified.values()
                           if o.kind is not OutcomeKind.SENT})
        log.info("relay answered", results=dict(results), seconds=round(seconds, 3),
                 **({"guidance": problems} if problems else {}))
        return report

    async def _transmit(self, relay: str, sender: str, recipients: list[str],
                        data: Body) -> DeliveryReport:
        pool = self.pools.get(relay)
        if pool is None:
            return _missing_relay_report(relay, recipients)
        if isinstance(data, BodyUnavailable):
            return _unavailable_report(relay, recipients, data)
        return await pool.deliver(sender, recipients, data)

    async def _body(self, claim: Claim) -> Body:
        """The wire form: bytes for a small message, a body streamed from the blob
        store otherwise, or why its files cannot be sent (checked before any
        relay is contacted; the sha256 is checked while it streams)."""
        body = self._writer.body_for(claim.message.content, claim.message.message_id)
        if body.is_small:
            return body.as_bytes()
        try:
            await body.check()
        except BodyUnavailable as exc:
            log.warning("attachment not sendable", detail=exc.message, condition=exc.condition)
            return exc
        return body

    def _decide(self, claim: Claim, outcomes: dict[str, Outcome]) -> AttemptVerdict:
        message = claim.message
        ctx = AttemptContext(
            attempt=claim.attempt,
            accepted_at=message.created_at,
            held_for=timedelta(seconds=message.held_seconds),
            statuses={r.address: r.status for r in message.recipients},
            on_uncertain=self._delivery.on_uncertain,
        )
        return decide_attempt(ctx, outcomes, self.policy, self._clock(), self._rng)

    async def _persist(self, claim: Claim, verdict: AttemptVerdict, relays: list[str],
                       transcripts: list[str]) -> None:
        started = claim.lease_until - self._delivery.lease
        record = AttemptRecord(
            message_id=claim.message.id, token=claim.token, number=claim.attempt,
            relay=",".join(relays), started_at=started, finished_at=self._clock(),
            outcome=verdict.outcome, transcript="\n".join(transcripts),
            recipient_updates=verdict.recipient_updates, status=verdict.status,
            due_at=verdict.due_at, events=verdict.events, count_attempt=verdict.count_attempt,
            hold_reason=verdict.hold_reason, held_for_relay=verdict.held_for_relay,
        )
        if not await self._recorder.record(record):
            log.warning("lease lost before the result was recorded; late result discarded",
                        message=claim.message.id, attempt=claim.attempt, outcome=verdict.outcome)
            return
        if self._on_verdict is not None:
            await self._on_verdict(claim, verdict)

    async def _renew_leases(self) -> None:
        interval = max(self._delivery.lease.total_seconds() / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            if self._inflight:
                now = self._clock()
                await self.store.renew_leases(self.owner, now + self._delivery.lease)

    async def _collect_blobs_periodically(self) -> None:
        """Delete attachment content nothing uses any more (every node may run this)."""
        interval = self.settings.storage.collect_every.total_seconds()
        while True:
            try:
                deleted = await self.blobs.collect(self._clock())
                if deleted:
                    log.info("deleted attachment content no message uses", count=len(deleted))
            except Exception:
                log.exception("attachment clean-up failed; will try again")
            await asyncio.sleep(interval)

    async def _sweep_periodically(self) -> None:
        interval = min(max(self._delivery.lease.total_seconds() / 2, 0.5), 60.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep_stale()
            except Exception:
                log.exception("stale-lease sweep failed; will try again")


def _pending_by_relay(recipients: Sequence[Recipient]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for recipient in recipients:
        if not recipient.status.is_final:
            groups.setdefault(recipient.relay, []).append(recipient.address)
    return groups


Body = bytes | PlannedBody | BodyUnavailable


def _unavailable_report(relay: str, recipients: list[str],
                        problem: BodyUnavailable) -> DeliveryReport:
    return DeliveryReport(
        relay=relay, recipients=tuple(recipients),
        failure=SessionFailure(Stage.PREPARE, condition=Condition(problem.condition),
                               detail=problem.message),
        transcript=f"(nothing sent: {problem.message})")


def _missing_relay_report(relay: str, recipients: list[str]) -> DeliveryReport:
    return DeliveryReport(
        relay=relay, recipients=tuple(recipients),
        failure=SessionFailure(Stage.CONNECT, condition=Condition.RELAY_NOT_CONFIGURED,
                               detail=f"relay '{relay}' is no longer configured"),
        transcript=f"(no relay named '{relay}' in the configuration)")

