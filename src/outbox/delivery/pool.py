"""Reusable SMTP sessions to one relay (STYLE principle 10, Postfix `smtp_reuse.c`).

At most `max_connections` sessions are open at once, in use or idle; with the
delivery processes of one serve, at most that many from all of them
(`delivery.slots`: each session holds a slot, and gives it back to a process
owed its share when it is returned). An idle
session is reused after an RSET (none after a finished transaction when the
relay offers PIPELINING: `SmtpSession.reset`), up to `messages_per_connection` messages;
it is closed after `idle_timeout` without use, and dropped at once after a
failure (a session whose RSET fails is replaced, not reported). A reused
session the relay closed before it answered MAIL costs no message: it goes
again at once on a new session.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.report import Condition, DeliveryReport, Stage
from outbox.delivery.auth import Authenticator
from outbox.delivery.body import MessageBody
from outbox.delivery.slots import SLOT_POLL, SessionSlots, Slot
from outbox.delivery.smtp.errors import SessionError
from outbox.delivery.smtp.info import SessionInfo
from outbox.delivery.smtp.session import SmtpSession, open_session

PoolKey = tuple[str, str, int, str, str]
IDLE_LOOK = 0.1  # seconds between looks, with idle sessions, for another process waiting


def pool_key(relay: RelaySettings) -> PoolKey:
    """Everything that makes a session unshareable between two relays."""
    return (relay.name, relay.host.lower(), relay.port, relay.security, relay.username)


class SessionPool:
    """The sessions of one relay. `deliver` is safe to call concurrently."""

    def __init__(self, relay: RelaySettings, delivery: DeliverySettings, *,
                 authenticators: Sequence[Authenticator] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_open: Callable[[SessionInfo], None] | None = None,
                 sessions: SessionSlots | None = None) -> None:
        self.relay = relay
        self._delivery = delivery
        self._authenticators = authenticators
        self._on_open = on_open  # sees each new session's greeting, EHLO, TLS and AUTH
        self._clock = clock
        self._sending = asyncio.Semaphore(relay.max_connections)
        self._sessions = sessions or SessionSlots(relay.name, lambda: relay.max_connections)
        self._slot_of: dict[SmtpSession, Slot] = {}
        # Messages waiting for a session, first come first served: woken with None when
        # a session comes back here, or handed a slot another process freed (`_watch`).
        self._waiters: deque[asyncio.Future[Slot | None]] = deque()
        self._watcher: asyncio.Task[None] | None = None
        self._idle: list[SmtpSession] = []  # most recently used last
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self.sessions_opened = 0

    @property
    def key(self) -> PoolKey:
        return pool_key(self.relay)

    @property
    def idle_sessions(self) -> int:
        return len(self._idle)

    async def deliver(self, sender: str, recipients: Sequence[str],
                      message: bytes | MessageBody) -> DeliveryReport:
        """Send one message over a pooled session and report every reply.
        A session that cannot be opened is reported, not raised. `message`: the
        bytes, or a body streamed in chunks (`delivery.body.MessageBody`)."""
        if self._closed:
            raise RuntimeError(f"the session pool of relay '{self.relay.name}' is closed")
        async with self._sending:
            try:
                session = await self._checkout()
                reused = session.messages_sent > 0
                report = await self._send(session, sender, recipients, message)
                if reused and _closed_before_mail(report):
                    # The relay had closed this idle session; nothing was accepted, so
                    # the message goes at once on a new one (as Postfix does).
                    session = await self._checkout(fresh=True)
                    retried = await self._send(session, sender, recipients, message)
                    retried.transcript = f"{report.transcript}\n{retried.transcript}"
                    report = retried
            except SessionError as exc:
                return DeliveryReport(relay=self.relay.name, recipients=tuple(recipients),
                                      failure=exc.failure, transcript=exc.transcript)
            return report

    async def _send(self, session: SmtpSession, sender: str, recipients: Sequence[str],
                    message: bytes | MessageBody) -> DeliveryReport:
        try:
            report = await session.send(sender, recipients, message)
        except BaseException:
            self._abort(session)  # cancelled mid-transaction: the state is unknown
            raise
        await self._checkin(session)
        return report

    async def aclose(self) -> None:
        """QUIT every idle session; sessions in use close when returned."""
        self._closed = True
        for task in (self._reaper, self._watcher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._close(session) for session in idle), return_exceptions=True)

    async def __aenter__(self) -> SessionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _checkout(self, *, fresh: bool = False) -> SmtpSession:
        """An idle session (unless `fresh`), or a new one once a slot is free. Behind
        messages already waiting, a message waits in line without looking for a slot:
        `_watch` looks for them all (a look tries a lock on each of the relay's slots:
        with another process holding half of them, a draining delivery process spent
        about 6 % of its event loop's time on looks that found nothing)."""
        while True:
            while self._idle and not fresh:
                session = self._idle.pop()
                if await self._reuse(session):
                    return session
            slot = None if self._waiters else self._sessions.try_acquire()
            if slot is None:
                slot = await self._wait()
            if slot is not None:
                return await self._open(slot)

    async def _wait(self) -> Slot | None:
        """Until a session comes back here (None) or a slot is handed over."""
        waiter: asyncio.Future[Slot | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(),
                                                name=f"outbox-pool-slots-{self.relay.name}")
        self._sessions.wait_begins()
        try:
            return await waiter  # `_wake_one` took it out of the line
        except BaseException:
            handed = waiter.result() if waiter.done() and not waiter.cancelled() else None
            if handed is not None:
                self._sessions.release(handed)  # handed a slot, then cancelled
            else:  # cancelled in line (on Python 3.11, a miss would format the future)
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            self._sessions.wait_ends()

    def _wake_one(self, slot: Slot | None = None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return True
        return False

    async def _watch(self) -> None:
        """While messages wait: one look for a free slot every SLOT_POLL, for them all
        (another process's sessions free slots without a word to this one)."""
        while self._waiters:
            await asyncio.sleep(SLOT_POLL)
            while self._waiters and (slot := self._sessions.try_acquire()) is not None:
                if not self._wake_one(slot):
                    self._sessions.release(slot)

    async def _open(self, slot: Slot) -> SmtpSession:
        try:
            session = await open_session(self.relay, self._delivery,
                                         authenticators=self._authenticators)
        except BaseException:
            self._sessions.release(slot)
            raise
        self._slot_of[session] = slot
        self.sessions_opened += 1
        if self._on_open is not None:
            self._on_open(session.info)
        return session

    async def _reuse(self, session: SmtpSession) -> bool:
        """RSET an idle session; close it if it expired or the RSET failed."""
        try:
            if not self._is_expired(session) and await session.reset():
                return True
            await self._close(session)
            return False
        except BaseException:
            self._abort(session)
            raise

    async def _checkin(self, session: SmtpSession) -> None:
        if not session.is_usable or self._closed or (
                session.messages_sent >= self._delivery.messages_per_connection) or (
                self._sessions.gives_back(self._slot_of[session])):
            await self._close(session)  # QUIT only if the session is still healthy
        else:
            session.last_used = self._clock()
            self._idle.append(session)
            self._start_reaper()
        self._wake_one()  # a waiting message may take it, or its slot

    async def _close(self, session: SmtpSession) -> None:
        try:
            await session.close()
        finally:
            self._release(session)

    def _abort(self, session: SmtpSession) -> None:
        session.abort()
        # The socket closes on the loop's next turn: until then the relay still has it.
        asyncio.get_running_loop().call_soon(self._release, session)

    def _release(self, session: SmtpSession) -> None:
        slot = self._slot_of.pop(session, None)
        if slot is not None:
            self._sessions.release(slot)

    def _is_expired(self, session: SmtpSession) -> bool:
        return self._clock() - session.last_used >= self._idle_timeout

    @property
    def _idle_timeout(self) -> float:
        return self._delivery.idle_timeout.total_seconds()

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap_idle(),
                                               name=f"outbox-pool-reaper-{self.relay.name}")

    async def _reap_idle(self) -> None:
        """Close idle sessions as they expire, or at once when another process waits
        for a session (`SessionSlots.wanted_elsewhere`); ends when none is left."""
        while self._idle:
            oldest = min(session.last_used for session in self._idle)
            wait = max(oldest + self._idle_timeout - self._clock(), 0.01)
            await asyncio.sleep(min(wait, IDLE_LOOK) if self._sessions.is_shared else wait)
            if self._sessions.wanted_elsewhere():
                expired = list(self._idle)
            else:
                expired = [s for s in self._idle if self._is_expired(s)]
            self._idle = [s for s in self._idle if s not in expired]
            await asyncio.gather(*(self._close(s) for s in expired), return_exceptions=True)


def _closed_before_mail(report: DeliveryReport) -> bool:
    """The connection was gone before the relay answered MAIL."""
    failure = report.failure
    return (report.mail_reply is None and failure is not None and failure.stage is Stage.MAIL
            and failure.condition is Condition.CONNECTION_DROPPED)
