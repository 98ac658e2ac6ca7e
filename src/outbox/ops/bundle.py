"""`outbox support-bundle`: one zip to send to whoever helps, with nothing secret in it.

    README.txt      what the bundle is and what each file holds
    config.toml     the effective configuration, secrets replaced by ***
    logs.txt        the last lines of the [logging] file
    messages.json   the newest messages: status, recipients, timeline, and the
                    last attempt's (redacted) transcript for those not sent;
                    never their content (subject, body, attachments) or metadata
    queue.json      queue statistics and active alerts
    versions.json   Outbox, Python, the OS, key libraries, the database server
    doctor.json     `outbox doctor --json`

Secrets are kept out twice: the configuration is masked as `outbox config
show` masks it, and then every configured secret (relay passwords and their
base64 forms, OAuth2 secrets, API keys, the webhook secret and URL, the
password and secret query values, such as password= or access_token=, of every
URL in it) is scrubbed from every file before it is zipped.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit

from pydantic import SecretStr

from outbox import __version__
from outbox.clock import utcnow
from outbox.config import Settings, log_history_path
from outbox.config.sample import masked_config
from outbox.delivery.transcript import REDACTED, secret_forms
from outbox.errors import OutboxError
from outbox.ops.doctor import run_doctor
from outbox.secrets import url_secrets
from outbox.store.base import Message, Store

LIBRARIES = ("fastapi", "uvicorn", "starlette", "pydantic", "pydantic-settings", "sqlalchemy",
             "alembic", "aiosqlite", "asyncpg", "aiosmtplib", "aiosmtpd", "httpx",
             "prometheus-client", "structlog", "typer", "cryptography")
_TAIL_BLOCK = 64 * 1024
SECRET_KEY_ENV = "OUTBOX_SECRET_KEY"


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    description: str
    data: bytes


def as_json(value: Any) -> bytes:
    return json.dumps(value, indent=2, default=_json_default, ensure_ascii=False).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


async def write_bundle(settings: Settings, database: Store | str, output: Path, *,
                       log_lines: int = 1000, messages: int = 50,
                       clock: Callable[[], datetime] = utcnow) -> list[Member]:
    """Collect, scrub and zip; returns what went in (README.txt first). `database`:
    the open store, or why it could not be opened (see `service.diagnostics`)."""
    members = [config_member(settings), logs_member(settings, log_lines)]
    database_version, queue_members = await database_members(database, messages)
    members += queue_members
    members.append(versions_member(database_version))
    report = await run_doctor(settings, database, clock=clock)
    members.append(Member("doctor.json", "`outbox doctor --json`", as_json(report.as_dict())))
    members.insert(0, readme_member(members, clock()))
    scrub = Scrubber(configured_secrets(settings))
    members = [Member(m.name, m.description, scrub(m.data)) for m in members]
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for member in members:
            bundle.writestr(member.name, member.data)
    return members


# --- secrets --------------------------------------------------------------------------

def configured_secrets(settings: Settings) -> set[str]:
    """Every secret the configuration holds (each secret-typed value, wherever
    it is), in the forms it could appear in."""
    found = set(_secret_values(settings.model_dump(mode="python")))
    for relay in settings.relays:
        found |= secret_forms(relay.username, relay.password.get_secret_value())
    webhook = urlsplit(settings.alerts.webhook_url)
    found.add(settings.alerts.webhook_url)
    # A long path or query (Slack-style URLs) is a credential; a short one ("/hook") is not.
    found |= {part for part in (webhook.path.strip("/"), webhook.query) if len(part) >= 16}
    found.add(os.environ.get(SECRET_KEY_ENV, ""))  # the key sealing stored credentials
    return {secret for secret in found if len(secret) >= 3}


def _secret_values(value: Any) -> Iterator[str]:
    """Secret-typed values, and the secrets inside URLs (passwords, and query values such
    as password=, sslpassword=, client_secret=, access_token=), anywhere in the config."""
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, str) and "://" in value:
        for secret in url_secrets(value):
            yield from _written_forms(secret)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _secret_values(item)


def _written_forms(secret: str) -> set[str]:
    """As written, percent-decoded, and encoded again as a library may print the URL."""
    forms = {secret, unquote(secret), unquote_plus(secret)}
    return forms | {encode(form, safe="") for form in set(forms) for encode in (quote, quote_plus)}


class Scrubber:
    """Replaces each secret, and its JSON-escaped form, by *** where it stands as a whole
    token: not where it is only part of a longer word (a password `secret` leaves
    `webhook_secret` alone, and `secret` inside `user:secret@host` is replaced)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for secret in secrets for form in (secret, json.dumps(secret)[1:-1])}
        ordered = sorted((f.encode() for f in forms if f), key=len, reverse=True)
        alternatives = b"|".join(re.escape(form) for form in ordered)
        self._pattern = (re.compile(rb"(?<![A-Za-z0-9_])(?:" + alternatives + rb")(?![A-Za-z0-9_])")
                         if ordered else None)

    def __call__(self, data: bytes) -> bytes:
        if self._pattern is None:
            return data
        return self._pattern.sub(REDACTED.encode(), data)


# --- members ------------------------------------------------------------------------

def config_member(settings: Settings) -> Member:
    return Member("config.toml", "the effective configuration, secrets replaced by ***",
                  masked_config(settings).encode())


def logs_member(settings: Settings, count: int) -> Member:
    path = settings.logging.file or log_history_path(settings)
    if not path:
        note = ("no log file: [logging] file is empty and [logging] history is off or has no "
                "SQLite database to sit beside; Outbox logs to stderr, so its log is wherever "
                "the service manager keeps it (e.g. `journalctl -u outbox-serve`). Set "
                "[logging] history to a path to keep a copy.\n")
        return Member("logs.txt", "no log file configured (logs go to stderr)", note.encode())
    if not settings.logging.file and not Path(path).exists():
        note = (f"no copy of the log at {path} yet: it is written as soon as `outbox serve`, "
                "`outbox worker` or another command logs; logs also go to stderr.\n")
        return Member("logs.txt", "no log lines yet", note.encode())
    try:
        lines = tail_lines(Path(path), count)
    except OSError as exc:
        text = f"cannot read the log file {path}: {exc.strerror or exc}\n"
        return Member("logs.txt", "the log file could not be read", text.encode())
    return Member("logs.txt", f"the last {len(lines)} line(s) of {path}",
                  b"".join(line + b"\n" for line in lines))


def tail_lines(path: Path, count: int) -> list[bytes]:
    """The last `count` lines, read from the end (a log may be large)."""
    with path.open("rb") as handle:
        end = handle.seek(0, 2)
        data, start = b"", end
        while start > 0 and data.count(b"\n") <= count:
            start = max(start - _TAIL_BLOCK, 0)
            handle.seek(start)
            data = handle.read(end - start)
    lines = data.splitlines()
    if start > 0:
        lines = lines[1:]  # the first one is cut
    return lines[-count:] if count > 0 else []


async def database_members(database: Store | str, count: int) -> tuple[str, list[Member]]:
    """(the database's version, [messages.json, queue.json]); notes when unreachable."""
    if isinstance(database, str):
        return "", [_note_member("queue.json", database)]
    try:
        info = await database.describe_database()
        version = f"{info.backend} {info.version} (schema {info.revision})"
        return version, [await messages_member(database, count), await queue_member(database)]
    except OutboxError as exc:
        return "", [_note_member("queue.json", f"the database failed: {exc.message}")]


def _note_member(name: str, note: str) -> Member:
    return Member(name, note, as_json({"error": note}))


async def messages_member(store: Store, count: int) -> Member:
    page = await store.messages.list(None, count, None)
    entries = [await message_entry(store, message) for message in page.messages]
    return Member("messages.json", f"the newest {len(entries)} messages: status, recipients, "
                  "timeline (no content)", as_json({"messages": entries}))


async def message_entry(store: Store, message: Message) -> dict[str, Any]:
    detail = await store.messages.get(message.id)
    entry: dict[str, Any] = {
        "id": message.id, "message_id": message.message_id, "status": message.status.value,
        "attempts": message.attempts, "created_at": message.created_at,
        "updated_at": message.updated_at, "next_attempt_at": message.due_at,
        "hold_reason": message.hold_reason, "sender": message.sender,
        "recipients": [asdict(r) for r in message.recipients],
        "events": [asdict(e) for e in detail.events]}
    if message.status.value != "sent":
        attempts = await store.messages.attempts(message.id)
        entry["last_attempt"] = asdict(attempts[-1]) if attempts else None
    return entry


async def queue_member(store: Store) -> Member:
    stats = await store.messages.stats()
    alerts = await store.alerts.list_alerts(active_only=True)
    body = {"by_status": stats.by_status, "oldest_pending_at": stats.oldest_pending_at,
            "active_alerts": [asdict(a) for a in alerts]}
    return Member("queue.json", "queue statistics and active alerts", as_json(body))


def versions_member(database: str) -> Member:
    body = {"outbox": __version__, "python": sys.version.split()[0],
            "python_implementation": platform.python_implementation(),
            "os": platform.platform(), "machine": platform.machine(),
            "database": database or "unknown (not reachable)",
            "libraries": {name: _version_of(name) for name in LIBRARIES}}
    return Member("versions.json", "versions of Outbox, Python, the OS, libraries, database",
                  as_json(body))


def _version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def readme_member(members: list[Member], now: datetime) -> Member:
    lines = [f"Outbox {__version__} support bundle, made {now.isoformat()}.",
             "Secrets (passwords, tokens, API keys, webhook secret) are replaced by ***.",
             "Message content (subject, body, attachments) and metadata are not included.", "",
             *(f"{m.name:<15} {m.description}" for m in members)]
    return Member("README.txt", "what this bundle is and holds", "\n".join(lines).encode()
                  + b"\n")
