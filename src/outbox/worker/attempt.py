"""One claimed message, one attempt, as a pipeline of small named steps:

    prepare_body → transmit (per relay) → classify → decide → record
      → on_verdict          or, if a step raises:  give_back

The decision over a large message's recipients pauses every few hundred of them
(`core.decide.decide_in_steps`), so that small requests are answered in between.

The worker runs one `Attempt` per claim, in its own task. Nothing here
decides "permanent or transient": `core.classify` and `core.decide` do.
Two rules make a fault inside Outbox harmless:
- a verdict that cannot be recorded (the database is down) is recorded again
  and again, never delivered again, until it lands or the claim is lost;
- a step that raises gives the claim back at once (`core.recovery`, cause
  `crashed`), uncertain if a relay may already have the message, so it never
  waits in `sending` for its lease.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from outbox.config import DeliverySettings
from outbox.core.classify import classify
from outbox.core.decide import AttemptContext, AttemptVerdict, decide_in_steps
from outbox.core.model import Outcome, OutcomeKind, Scope
from outbox.core.recovery import AbandonedClaim, Cause, Recovery
from outbox.core.report import Condition, DeliveryReport, SessionFailure, Stage
from outbox.core.retry import RetryPolicy
from outbox.delivery.body import MessageBody
from outbox.delivery.mime_writer import MimeWriter
from outbox.errors import BodyUnavailable
from outbox.observability import DeliveryMetrics, log_context
from outbox.store.base import MessageStore
from outbox.store.values import AttemptRecord, Claim, Message, Recipient
from outbox.supervision import LoopMonitor
from outbox.worker.recorder import Recorder

log = structlog.get_logger("outbox.worker")

Body = bytes | MessageBody | BodyUnavailable
OnVerdict = Callable[[Claim, AttemptVerdict], Awaitable[None]]
ReturnPath = Callable[[Message], Awaitable[str]]  # the envelope sender (VERP, service.bounces)
# The wire form with the DKIM signatures in front (delivery.dkim, from the service).
Sign = Callable[[bytes | MessageBody, Message], Awaitable[bytes | MessageBody]]
RETRY_FIRST, RETRY_MAX = 0.5, 5.0  # seconds between tries to record against a failing store


class Deliverer(Protocol):
    """What the worker needs of a relay (its gate, around the session pool)."""

    async def deliver(self, sender: str, recipients: Sequence[str],
                      message: bytes | MessageBody) -> DeliveryReport: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AttemptTools:
    """What every attempt of one worker shares."""

    store: MessageStore
    relays: Mapping[str, Deliverer]
    writer: MimeWriter
    recorder: Recorder
    policy: RetryPolicy
    recovery: Recovery
    delivery: DeliverySettings
    clock: Callable[[], datetime]
    rng: random.Random
    metrics: DeliveryMetrics | None = None
    on_verdict: OnVerdict | None = None
    recording: LoopMonitor | None = None  # /healthz hears of results that cannot be written
    return_path: ReturnPath | None = None  # None: the sender the message was submitted with
    sign: Sign | None = None  # None: sent unsigned


class Attempt:
    def __init__(self, claim: Claim, tools: AttemptTools) -> None:
        self.claim = claim
        self.tools = tools
        self.may_have_sent = False  # a relay was handed (part of) the message

    async def run(self) -> None:
        try:
            await self._deliver()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("delivery failed inside Outbox; the claim is given back")
            await self.give_back(exc)

    async def _deliver(self) -> None:
        """Every pending recipient, grouped by relay."""
        message = self.claim.message
        data = await self._prepare_body()
        outcomes: dict[str, Outcome] = {}
        transcripts: list[str] = []
        relays: list[str] = []
        holding = ""  # the first relay whose trouble holds the message
        for relay, recipients in pending_by_relay(message.recipients).items():
            with log_context(relay=relay):
                report = await self._transmit_observed(relay, recipients, data, outcomes)
            transcripts.append(report.transcript)
            if not _waited_its_turn(report):  # no relay was tried: not the relay's attempt
                relays.append(relay)
            if not holding and any(outcomes[r].kind is OutcomeKind.HELD
                                   and outcomes[r].scope is Scope.RELAY for r in recipients):
                holding = relay
        verdict = await self._decide(outcomes)
        if await self._record(verdict, relays, transcripts, holding) and self.tools.on_verdict:
            await self.tools.on_verdict(self.claim, verdict)

    async def _prepare_body(self) -> Body:
        """The wire form: bytes for a small message, a body streamed from the blob
        store otherwise, or why its files cannot be sent (checked before any
        relay is contacted; the sha256 is checked while it streams)."""
        message = self.claim.message
        body = self.tools.writer.body_for(message.content, message.message_id)
        try:
            if not body.is_small:
                await body.check()
            wire: bytes | MessageBody = body.as_bytes() if body.is_small else body
            return wire if self.tools.sign is None else await self.tools.sign(wire, message)
        except BodyUnavailable as exc:
            log.warning("attachment not sendable", detail=exc.message, condition=exc.condition)
            return exc

    async def _transmit_observed(self, relay: str, recipients: list[str], data: Body,
                                 outcomes: dict[str, Outcome]) -> DeliveryReport:
        """Transmit, classify into `outcomes`, then count and log what the relay said."""
        started = time.monotonic()
        report = await self._transmit(relay, recipients, data)
        classified = classify(report)
        outcomes.update(classified)
        seconds = time.monotonic() - started
        if _waited_its_turn(report):
            # Not an attempt on the relay: neither its metrics nor its health count it.
            log.info("waited for the relay's sessions; back in the queue for its turn",
                     seconds=round(seconds, 3))
            return report
        results = Counter(outcome.kind.value for outcome in classified.values())
        if self.tools.metrics is not None:
            self.tools.metrics.observe(relay, results, seconds)
        problems = sorted({o.guidance for o in classified.values()
                           if o.kind is not OutcomeKind.SENT})
        log.info("relay answered", results=dict(results), seconds=round(seconds, 3),
                 **({"guidance": problems} if problems else {}))
        return report

    async def _transmit(self, relay: str, recipients: list[str], data: Body) -> DeliveryReport:
        gate = self.tools.relays.get(relay)
        if gate is None:
            return _missing_relay_report(relay, recipients)
        if isinstance(data, BodyUnavailable):
            return _unavailable_report(relay, recipients, data)
        message = self.claim.message
        sender = message.sender if self.tools.return_path is None else (
            await self.tools.return_path(message))
        self.may_have_sent = True
        return await gate.deliver(sender, recipients, data)

    async def _decide(self, outcomes: dict[str, Outcome]) -> AttemptVerdict:
        message = self.claim.message
        ctx = AttemptContext(
            attempt=self.claim.attempt,
            accepted_at=message.created_at,
            held_for=timedelta(seconds=message.held_seconds),
            statuses={r.address: r.status for r in message.recipients},
            on_uncertain=self.tools.delivery.on_uncertain,
        )
        steps = decide_in_steps(ctx, outcomes, self.tools.policy, self.tools.clock(),
                                self.tools.rng)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                verdict: AttemptVerdict = done.value
                return verdict
            await asyncio.sleep(0)

    async def _record(self, verdict: AttemptVerdict, relays: list[str],
                      transcripts: list[str], holding: str = "") -> bool:
        """Record the verdict; against a failing store, again and again (never deliver
        again) until it lands or the lease is over. False: the claim was lost."""
        claim, tools = self.claim, self.tools
        record = AttemptRecord(
            message_id=claim.message.id, token=claim.token, number=claim.attempt,
            relay=",".join(relays), started_at=claim.lease_until - tools.delivery.lease,
            finished_at=tools.clock(), outcome=verdict.outcome,
            transcript="\n".join(transcripts), recipient_updates=verdict.recipient_updates,
            status=verdict.status, due_at=verdict.due_at, events=verdict.events,
            count_attempt=verdict.count_attempt, hold_reason=verdict.hold_reason,
            held_for_relay=verdict.held_for_relay, hold_relay=holding,
        )
        accepted = await self._until_stored("record the result",
                                            lambda: tools.recorder.record(record))
        if not accepted:
            log.warning("lease lost before the result was recorded; late result discarded",
                        message=claim.message.id, attempt=claim.attempt, outcome=verdict.outcome)
        return bool(accepted)

    async def give_back(self, exc: BaseException) -> None:
        """The delivery raised: the claim goes back at once with its verdict."""
        message = self.claim.message
        abandoned = AbandonedClaim(
            owner=self.claim.owner, attempts_made=message.attempts,
            accepted_at=message.created_at, held_for=timedelta(seconds=message.held_seconds),
            cause=Cause.CRASHED, may_have_sent=self.may_have_sent, detail=_describe(exc))
        verdict = self.tools.recovery.decide(abandoned, self.tools.clock(), self.tools.rng)
        await self._until_stored("give the claim back", lambda: self.tools.store.abandon_claim(
            message.id, self.claim.token, self.tools.clock(), verdict))

    async def _until_stored(self, what: str, write: Callable[[], Awaitable[bool]]) -> bool:
        """`write()`, tried again with back-off while the store fails, for as long as
        the claim's lease lasts (after that, recovery elsewhere takes over)."""
        deadline = time.monotonic() + self.tools.delivery.lease.total_seconds()
        pause = RETRY_FIRST
        monitor = self.tools.recording
        while True:
            try:
                written = await write()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if monitor is not None:
                    monitor.failed(exc)
                if time.monotonic() + pause > deadline:
                    log.error(f"could not {what} before the lease ran out; recovery will "
                              "take the message over", error=_describe(exc))
                    return False
                log.warning(f"could not {what}; trying again", error=_describe(exc),
                            retry_in=round(pause, 1))
            else:
                if monitor is not None:
                    monitor.succeeded()
                return written
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX)


def pending_by_relay(recipients: Sequence[Recipient]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for recipient in recipients:
        if not recipient.status.is_final:
            groups.setdefault(recipient.relay, []).append(recipient.address)
    return groups


def _waited_its_turn(report: DeliveryReport) -> bool:
    """The gate gave the message back after it waited for a session (delivery/lane.py)."""
    return (report.failure is not None
            and report.failure.condition is Condition.RELAY_SESSIONS_BUSY)


def _describe(exc: BaseException) -> str:
    one_line = getattr(exc, "one_line", None)
    if callable(one_line):
        return str(one_line())
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


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
