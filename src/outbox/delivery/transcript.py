"""The SMTP conversation of one session, as Outbox shows it to people.

Lines are redacted when they are recorded, never later, so nothing secret is
ever held: an AUTH command keeps only its mechanism (`AUTH PLAIN ***`), the
client's answers to AUTH challenges become `***`, the server's challenges
`334 ***`, and every registered secret (a password and its base64 forms) is
replaced wherever it would appear. Message data is only counted.

A session's setup lines (greeting, EHLO, STARTTLS, AUTH) come first in the
transcript of every message sent over it; then that message's own lines.
Times are seconds since the session started.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable

from outbox.core.report import SessionFailure

REDACTED = "***"
CLIENT = "C"
SERVER = "S"
NOTE = "*"


def secret_forms(username: str, password: str) -> set[str]:
    """A password and the base64 forms it takes on the wire (PLAIN, LOGIN)."""
    if not password:
        return set()
    forms = {password, _b64(password), _b64(f"\0{username}\0{password}")}
    forms |= {form.rstrip("=") for form in forms}
    return {form for form in forms if len(form) >= 3}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class Transcript:
    """Recorder of one session's lines, redacting as it goes."""

    def __init__(self, secrets: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        # Lines are kept as text: a message's own lines are joined once, into the report
        # its attempt records, and an object per line (about ten a message) cost more
        # than the text (issue 15).
        self._setup: list[str] = []
        self._message: list[str] | None = None
        # The setup lines joined (how many, and the text): the same in front of each of
        # the session's messages, joined once rather than once a message.
        self._rendered_setup: tuple[int, str] = (0, "")

    def begin_message(self) -> None:
        """From now on lines belong to the next message, after the setup."""
        self._message = []

    def client(self, text: str, *, secret: bool = False) -> None:
        """A line Outbox sent. `secret`: an answer to an AUTH challenge."""
        self._add(CLIENT, _redact_client(text, secret))

    def server(self, code: int, message: str, *, secret: bool = False) -> None:
        """A reply, one line per reply line. `secret`: a reply inside AUTH,
        whose 334 challenges are hidden."""
        lines = message.split("\n") if message else [""]
        for index, text in enumerate(lines):
            sep = " " if index == len(lines) - 1 else "-"
            if secret and code == 334:
                text = REDACTED
            self._add(SERVER, f"{code}{sep}{text}".rstrip())

    def data(self, size: int) -> None:
        self._add(CLIENT, f"<{size} bytes of message data>")

    def note(self, text: str) -> None:
        self._add(NOTE, text)

    def failure(self, failure: SessionFailure) -> None:
        what = str(failure.reply) if failure.reply else str(failure.condition or "failed")
        detail = f" ({failure.detail})" if failure.detail else ""
        self.note(f"failed at {failure.stage.value}: {what}{detail}")

    def render(self) -> str:
        count, setup = self._rendered_setup
        if count != len(self._setup):
            setup = "\n".join(self._setup)
            self._rendered_setup = (len(self._setup), setup)
        own = "\n".join(self._message or ())
        return f"{setup}\n{own}" if setup and own else setup or own

    def _add(self, direction: str, text: str) -> None:
        line = f"+{self._clock() - self._start:.3f}s {direction}: {self._scrub(text)}"
        (self._setup if self._message is None else self._message).append(line)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def _redact_client(text: str, secret: bool) -> str:
    verb, _, rest = text.partition(" ")
    if verb.upper() == "AUTH":
        mechanism, _, payload = rest.partition(" ")
        return f"AUTH {mechanism} {REDACTED}" if payload else f"AUTH {mechanism}"
    return REDACTED if secret else text
