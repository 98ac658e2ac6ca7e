"""The IMAP bounce mailbox: fetch the messages not yet processed, and mark each one
processed (moved to `move_to`, or flagged `\\Seen $OutboxProcessed`) once Outbox
recorded it. The standard library's imaplib, in a worker thread; every command has
the configured timeout. Errors leave as `errors.MailboxError`.

A message is marked only after it was applied, so a crash in between applies it
again on the next poll (at least once; a bounce applied twice writes a second event
and the same suppression).
"""

from __future__ import annotations

import asyncio
import imaplib
import re
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from outbox.config import ImapSettings
from outbox.errors import MailboxError

PROCESSED_KEYWORD = "$OutboxProcessed"
BATCH = 50  # messages fetched per poll


@dataclass(frozen=True, slots=True)
class MailboxMessage:
    uid: str
    raw: bytes
    rcpt_to: tuple[str, ...] = ()  # none: IMAP has no envelope; the headers are read


@contextmanager
def _translated(settings: ImapSettings) -> Iterator[None]:
    try:
        yield
    except (imaplib.IMAP4.error, OSError, ssl.SSLError, EOFError) as exc:
        raise MailboxError(f"IMAP {settings.host}:{settings.port}: {exc}") from exc


class ImapMailbox:
    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings

    async def fetch(self) -> list[MailboxMessage]:
        return await asyncio.to_thread(self._fetch)

    async def mark_processed(self, uids: list[str]) -> None:
        if uids:
            await asyncio.to_thread(self._mark, uids)

    # -- in the worker thread -------------------------------------------------------

    def _fetch(self) -> list[MailboxMessage]:
        with _translated(self.settings), self._session() as imap:
            criteria = "ALL" if self.settings.move_to else f"UNKEYWORD {PROCESSED_KEYWORD}"
            status, data = imap.uid("SEARCH", criteria)
            _check(status, data, "SEARCH")
            uids = (data[0] or b"").decode().split()[:BATCH]
            return [self._one(imap, uid) for uid in uids]

    def _one(self, imap: imaplib.IMAP4, uid: str) -> MailboxMessage:
        status, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
        _check(status, data, "FETCH")
        raw = next((item[1] for item in data if isinstance(item, tuple)), b"")
        return MailboxMessage(uid, bytes(raw))

    def _mark(self, uids: list[str]) -> None:
        with _translated(self.settings), self._session() as imap:
            joined = ",".join(uids)
            target = self.settings.move_to
            if not target:
                status, data = imap.uid("STORE", joined, "+FLAGS",
                                        f"(\\Seen {PROCESSED_KEYWORD})")
                _check(status, data, "STORE")
                return
            imap.create(_quoted(target))  # NO when it exists already: fine
            if b"MOVE" in _capabilities(imap):
                status, data = imap.uid("MOVE", joined, _quoted(target))
                _check(status, data, "MOVE")
                return
            status, data = imap.uid("COPY", joined, _quoted(target))
            _check(status, data, "COPY")
            imap.uid("STORE", joined, "+FLAGS", "(\\Deleted)")
            imap.expunge()

    @contextmanager
    def _session(self) -> Iterator[imaplib.IMAP4]:
        imap = self._connect()
        try:
            login = imap.login(self.settings.username,
                               self.settings.password.get_secret_value())
            _check(login[0], login[1], "LOGIN")
            selected = imap.select(_quoted(self.settings.mailbox))
            _check(selected[0], selected[1], "SELECT")
            yield imap
        finally:
            with suppress(imaplib.IMAP4.error, OSError, EOFError):
                imap.logout()

    def _connect(self) -> imaplib.IMAP4:
        s = self.settings
        timeout = s.timeout.total_seconds()
        if s.security == "tls":
            return imaplib.IMAP4_SSL(s.host, s.port, ssl_context=self._context(),
                                     timeout=timeout)
        imap = imaplib.IMAP4(s.host, s.port, timeout=timeout)
        if s.security == "starttls":
            imap.starttls(self._context())
        return imap

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.ca_file or None)
        if not self.settings.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _check(status: str, data: Sequence[object], command: str) -> None:
    if status != "OK":
        said = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise imaplib.IMAP4.error(f"{command} failed: {said}")


def _capabilities(imap: imaplib.IMAP4) -> bytes:
    return b" ".join(c.encode() if isinstance(c, str) else c for c in imap.capabilities)


_ATOM = re.compile(r"^[A-Za-z0-9._/-]+$")


def _quoted(name: str) -> str:
    if _ATOM.match(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
