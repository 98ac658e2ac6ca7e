"""What the worker delivers through: one `RelayGate` per relay, around its
session pool.

A gate keeps the pool logged in with the relay's current credentials: it
looks at the relay's stored state at most every `SYNC_INTERVAL` (and at once
when a login fails), and when the credentials' version changed (set through
the CLI or API, on any node) it builds a new pool with them. Steps, per
message:

    sync_credentials → hold_if_relay_needs_attention → transmit
      → mark_needs_attention_if_login_failed | release_if_login_works_again

A login failure marks the relay `needs_attention` and holds all its waiting
mail (`CredentialVault.mark_needs_attention`); after that this node does not
log in with the same credentials again, since repeated failures can lock the
account. A login that works again releases the held mail. A relay with
credentials that could not log in at all (not over a clear connection, no
usable method, no OAuth2 token) is marked and held the same way, and its held
mail says why, not "the last login failed" (`core.attention`).

Clock skew seen by the relay's OAuth2 token source (the token endpoint's
`Date`) or in a relay greeting that carries a date becomes an `alert` event on
the message being delivered (`RelayGates.after_verdict`, the worker's
`on_verdict` hook), naming the fix, and a clock reading in the store that
`outbox doctor` reports.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from outbox.clock import utcnow
from outbox.config import DeliverySettings, RelaySettings, Settings
from outbox.core.attention import attention_cause, login_tried
from outbox.core.classify import classify
from outbox.core.decide import AttemptVerdict
from outbox.core.guidance import LOGIN_REQUIRED
from outbox.core.model import Event, EventType, Outcome
from outbox.core.relay_state import is_login_failure, logged_in
from outbox.core.replies import greeting_time
from outbox.core.report import Condition, DeliveryReport, SessionFailure, Stage
from outbox.delivery.auth import authenticators_for
from outbox.delivery.body import MessageBody
from outbox.delivery.credentials import CredentialVault
from outbox.delivery.governor import RelayGovernor
from outbox.delivery.lane import WAIT, Lane, Overdue, lane_width
from outbox.delivery.oauth import ClockSkew, TokenSource, clock_skew
from outbox.delivery.pool import SessionPool
from outbox.delivery.slots import SessionSlots, SharedSessions
from outbox.delivery.smtp.info import SessionInfo
from outbox.errors import OutboxError
from outbox.store.base import Claim, ClockReading, RelayAuth, Store

log = structlog.get_logger("outbox.gate")

SYNC_INTERVAL = 5.0  # seconds between looks at the relay's stored state


class RelayGate:
    """A relay's session pool, with its current credentials and state."""

    def __init__(self, relay: RelaySettings, delivery: DeliverySettings,
                 credentials: CredentialVault, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = utcnow,
                 shared: SharedSessions | None = None) -> None:
        self.relay = relay
        self._delivery = delivery
        self._credentials = credentials
        self._clock = clock
        self._wall = wall
        self._lock = asyncio.Lock()
        self._auth: RelayAuth | None = None
        self._synced_at = float("-inf")
        self._pool: SessionPool | None = None
        self._pool_relay = relay
        self._tokens: TokenSource | None = None
        self._version: int | None = None  # the credentials the pool logs in with
        self._sealed: str | None = None  # ... as stored (changes when rotated)
        self._failed_version: int | None = None  # login failed here with these
        self._last_login: datetime | None = None  # when a new session last logged in
        self._skews: list[ClockSkew] = []
        self._closing: set[asyncio.Task[None]] = set()
        self.governor = RelayGovernor(relay, delivery, credentials.store, wall=wall)
        self._lane = Lane(lane_width(relay), clock)  # delivery/lane.py
        # One count for every pool of the relay: a pool of old credentials may still
        # hold sessions while the new one opens its own.
        self._sessions = SessionSlots(relay.name, self.governor.limit, shared)

    async def deliver(self, sender: str, recipients: Sequence[str],
                      message: bytes | MessageBody) -> DeliveryReport:
        admission = await self.governor.admit()
        if not admission.go:
            return self._backing_off_report(recipients, admission.wait_until)
        try:
            # A probe waits for its turn however long: the governor waits for its result.
            async with self._lane.turn(None if admission.probe else WAIT):
                attempt = await self._transmit_in_slot(sender, recipients, message)
        except Overdue as overdue:
            return self._overdue_report(recipients, overdue.turn_in)
        if attempt is None:
            return self._held_report(recipients)
        await self._settle(attempt)
        return await self.governor.observe(attempt.report, probe=admission.probe)

    def narrowed(self) -> int | None:
        """The most attempts a worker should give this relay for now (delivery/lane.py),
        or None."""
        return self._lane.narrowed()

    def take_skews(self) -> list[ClockSkew]:
        """Clock skews seen since the last call (each reported once)."""
        skews, self._skews = self._skews, []
        if self._tokens is not None and (skew := self._tokens.take_skew()) is not None:
            skews.append(skew)
        return skews

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        await asyncio.gather(*self._closing, return_exceptions=True)
        self._sessions.close()

    # -- steps -------------------------------------------------------------------------

    async def _transmit_in_slot(self, sender: str, recipients: Sequence[str],
                                message: bytes | MessageBody) -> _Attempt | None:
        async with self.governor.slot():
            attempt = await self._transmit(sender, recipients, message)
            if attempt is not None and attempt.failure is not None and (
                    await self._credentials_changed(attempt.version)):
                # New credentials arrived while the old ones failed: they get their chance.
                attempt = await self._transmit(sender, recipients, message)
        return attempt

    async def sync_credentials(self, force: bool = False) -> SessionPool:
        """The pool for the relay's current credentials, rebuilt when they changed."""
        async with self._lock:
            if force or self._pool is None or self._clock() - self._synced_at >= SYNC_INTERVAL:
                self._auth = await self._load_auth()
                if self._pool is None or self._auth.version != self._version:
                    self._rebuild(self._auth)
                elif self._auth.credentials != self._sealed:
                    self._adopt_rotation(self._auth)
            return self._pool_now()

    async def _load_auth(self) -> RelayAuth:
        """The relay's stored state; while the database cannot say, what we knew."""
        try:
            auth = await self._credentials.store.relay_auth.load_relay_credentials(self.relay.name)
        except OutboxError as exc:
            log.warning("cannot read the relay's credentials; trying again soon",
                        relay=self.relay.name, error=exc.one_line())
            return self._auth or RelayAuth(self.relay.name)
        self._synced_at = self._clock()
        return auth

    async def _transmit(self, sender: str, recipients: Sequence[str],
                        message: bytes | MessageBody) -> _Attempt | None:
        """Deliver over the current pool; None when the relay's mail must wait."""
        pool = await self.sync_credentials()
        if self._is_blocked():
            pool = await self.sync_credentials(force=True)  # maybe fixed on another node
            if self._is_blocked():
                return None
        version, relay = self._version, self._pool_relay
        report = await pool.deliver(sender, recipients, message)
        return _Attempt(report, _login_failure(report), version, relay)

    def _is_blocked(self) -> bool:
        """hold_if_relay_needs_attention: this node's login with these credentials failed."""
        auth = self._auth
        return (auth is not None and auth.needs_attention
                and auth.version == self._failed_version == self._version)

    async def _credentials_changed(self, used: int | None) -> bool:
        """New credentials, or a refresh token another node rotated, since `used`."""
        sealed = self._sealed
        await self.sync_credentials(force=True)
        return self._version != used or self._sealed != sealed

    async def _settle(self, attempt: _Attempt) -> None:
        if attempt.failure is not None:
            await self._mark_needs_attention(attempt, attempt.failure)
        elif logged_in(attempt.report):
            await self._release_if_login_works_again(attempt)

    async def _mark_needs_attention(self, attempt: _Attempt, failure: Outcome) -> None:
        if attempt.version is None:
            return
        if attempt.relay.has_credentials:
            # Another login with the same credentials could lock the account: none
            # until they change. Without a login there is nothing to lock, so a message
            # an operator releases (`queue retry`) tries the relay again.
            self._failed_version = attempt.version
        else:
            failure = replace(failure, guidance=LOGIN_REQUIRED)
        try:
            await self._credentials.mark_needs_attention(attempt.relay, attempt.version,
                                                         failure)
        except OutboxError as exc:
            log.error("could not hold the mail of a relay that needs attention",
                      relay=self.relay.name, error=exc.one_line())
        self._synced_at = float("-inf")  # read the new state before the next message

    async def _release_if_login_works_again(self, attempt: _Attempt) -> None:
        """Only a session that logged in after the failure proves the login works; for
        a relay that refused mail without a login (none configured), MAIL accepted."""
        self._failed_version = None
        auth = self._auth
        if auth is None or not auth.needs_attention or auth.version != attempt.version:
            return
        mail = attempt.report.mail_reply
        took_mail = (not attempt.relay.has_credentials and mail is not None and mail.is_success)
        if not took_mail and (self._last_login is None or (
                auth.updated_at and self._last_login <= auth.updated_at)):
            return
        try:
            await self._credentials.mark_ok(self.relay.name, auth.version)
        except OutboxError as exc:
            log.error("could not release the held mail of a relay that works again",
                      relay=self.relay.name, error=exc.one_line())
        self._synced_at = float("-inf")

    def _backing_off_report(self, recipients: Sequence[str],
                            until: datetime | None) -> DeliveryReport:
        now = self._wall()
        detail = (f"relay {self.relay.name} is {self.governor.health.describe(now)}; its mail "
                  "waits without spending attempts")
        failure = SessionFailure(Stage.CONNECT, condition=Condition.RELAY_BACKING_OFF,
                                 detail=detail, retry_after=(until - now) if until else None)
        return self._not_sent(recipients, failure)

    def _overdue_report(self, recipients: Sequence[str], turn_in: float) -> DeliveryReport:
        detail = (f"relay {self.relay.name}'s sessions were busy with earlier mail for "
                  f"{WAIT:g}s; this message waits in the queue for its turn, in about "
                  f"{turn_in:.0f}s, without spending an attempt")
        failure = SessionFailure(Stage.CONNECT, condition=Condition.RELAY_SESSIONS_BUSY,
                                 detail=detail, retry_after=timedelta(seconds=turn_in))
        return self._not_sent(recipients, failure)

    def _not_sent(self, recipients: Sequence[str], failure: SessionFailure) -> DeliveryReport:
        """The report of mail this gate kept from the relay, and why."""
        return DeliveryReport(relay=self.relay.name, recipients=tuple(recipients),
                              failure=failure, transcript=f"(not sent: {failure.detail})")

    def _held_report(self, recipients: Sequence[str]) -> DeliveryReport:
        failure = _held_failure(self.relay.name, self._auth or RelayAuth(self.relay.name))
        return self._not_sent(recipients, failure)

    # -- the pool --------------------------------------------------------------------------

    def _pool_now(self) -> SessionPool:
        assert self._pool is not None
        return self._pool

    def _rebuild(self, auth: RelayAuth) -> None:
        try:
            relay = self._credentials.effective(self.relay, auth)
        except OutboxError as exc:
            log.error("stored relay credentials cannot be used; using the config's",
                      relay=self.relay.name, error=exc.one_line())
            relay = self.relay
        old, self._pool = self._pool, self._new_pool(relay, auth.version)
        self._pool_relay, self._version, self._sealed = relay, auth.version, auth.credentials
        if old is not None:
            task = asyncio.create_task(old.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            log.info("relay credentials changed; new sessions use them", relay=relay.name,
                     version=auth.version)

    def _adopt_rotation(self, auth: RelayAuth) -> None:
        """Another node saved a rotated refresh token: use it, keep the access token."""
        try:
            relay = self._credentials.effective(self.relay, auth)
        except OutboxError:
            return
        self._sealed = auth.credentials
        if relay.oauth2 is not None and self._tokens is not None:
            self._tokens.adopt_refresh_token(relay.oauth2.refresh_token.get_secret_value())
            self._pool_relay = relay

    def _new_pool(self, relay: RelaySettings, version: int) -> SessionPool:
        async def keep_rotated(token: str) -> None:
            sealed = await self._credentials.save_rotated(self._pool_relay, version, token)
            if sealed is not None and self._version == version:
                self._sealed = sealed

        self._tokens = (TokenSource(relay.oauth2, on_rotate=keep_rotated, wall=self._wall)
                        if relay.oauth2 is not None else None)
        return SessionPool(relay, self._delivery, authenticators=authenticators_for(
            relay, self._tokens), on_open=self._observe_session, sessions=self._sessions)

    def _observe_session(self, info: SessionInfo) -> None:
        """A new session is set up (logged in, if the relay has credentials); a greeting
        that carries a date shows how far off our clock is."""
        self._last_login = self._wall()
        said = greeting_time(str(info.greeting)) if info.greeting is not None else None
        skew = clock_skew(said, self._wall(), f"relay {self.relay.name}'s greeting")
        if skew is not None:
            self._skews.append(skew)


@dataclass(frozen=True, slots=True)
class _Attempt:
    report: DeliveryReport
    failure: Outcome | None  # a failed login
    version: int | None  # of the credentials used
    relay: RelaySettings  # with those credentials


def _held_failure(relay: str, auth: RelayAuth) -> SessionFailure:
    """Why mail for a relay marked needs_attention is not sent. A mark made without a
    login (none sent in clear, no usable method, no OAuth2 token: core.attention) keeps
    its own condition, whose guidance names the fix; only a refused login is "awaiting
    credentials"."""
    if not login_tried(auth.guidance) and auth.guidance in _CONDITIONS:
        detail = (f"relay {relay} needs attention: {attention_cause(auth.reason, auth.guidance)}"
                  "; its mail waits until that is fixed")
        return SessionFailure(Stage.AUTH, condition=Condition(auth.guidance), detail=detail)
    detail = (f"the last login to relay {relay} failed ({auth.reason}); Outbox does not log in "
              "again with the same credentials")
    return SessionFailure(Stage.AUTH, condition=Condition.AWAITING_CREDENTIALS, detail=detail)


_CONDITIONS = frozenset(condition.value for condition in Condition)


def _login_failure(report: DeliveryReport) -> Outcome | None:
    """The held outcome of a failed login (credentials, not the network), or of a relay
    that refuses mail for want of a login (`530 5.7.0 Authentication required` to MAIL):
    unmarked, the relay stayed `ok`, so its held mail was released and refused again
    every minute."""
    if not report.recipients:
        return None
    if report.failure is None and report.mail_reply is None:
        return None
    return next((o for o in classify(report).values() if is_login_failure(o)), None)


class RelayGates(Mapping[str, RelayGate]):
    """Every configured relay's gate, by name: what the worker delivers through."""

    def __init__(self, settings: Settings, store: Store, vault: CredentialVault, *,
                 clock: Callable[[], datetime] = utcnow,
                 shared: SharedSessions | None = None) -> None:
        """`shared`: where the delivery processes of one serve count their sessions."""
        self.credentials = vault
        self._clock = clock
        self._gates = {relay.name: RelayGate(relay, settings.delivery, self.credentials,
                                             wall=clock, shared=shared)
                       for relay in settings.relays}

    def __getitem__(self, name: str) -> RelayGate:
        return self._gates[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._gates)

    def __len__(self) -> int:
        return len(self._gates)

    async def after_verdict(self, claim: Claim, verdict: AttemptVerdict) -> None:
        """The worker's `on_verdict`: a clock skew seen during the attempt becomes
        an alert event on the message."""
        relays = {recipient.relay for recipient in claim.message.recipients}
        for name in sorted(relays & set(self._gates)):
            for skew in self._gates[name].take_skews():
                await self._report_skew(claim, skew)

    async def _report_skew(self, claim: Claim, skew: ClockSkew) -> None:
        log.warning("clock skew", detail=skew.describe(),
                    seconds=round(skew.skew.total_seconds()))
        now = self._clock()
        event = Event(now, EventType.ALERT, claim.attempt, guidance="clock_skew",
                      detail=skew.describe())
        reading = ClockReading(f"delivery on {socket.gethostname()}", skew.source,
                               round(skew.skew.total_seconds(), 3), now)
        try:
            await self.credentials.store.messages.append_event(claim.message.id, event)
            await self.credentials.store.alerts.record_clock_reading(reading)
        except OutboxError as exc:
            log.warning("could not record the clock-skew event", error=exc.one_line())

    async def aclose(self) -> None:
        await asyncio.gather(*(gate.aclose() for gate in self._gates.values()),
                             return_exceptions=True)
