"""Secrets at rest and secret references in the configuration.

Credentials entered through the API or the CLI are sealed with Fernet
(AES-128-CBC + HMAC-SHA256, from `cryptography`) before they reach the
database. The key comes from `OUTBOX_SECRET_KEY`, else from a key file:
`[secrets] key_file`, or by default next to the SQLite database
(`outbox.db.key`). A missing key file is created on first use with mode 0600.
PostgreSQL serves several nodes, which must all use the same key, so there
the key is never invented: give OUTBOX_SECRET_KEY or key_file.

A secret in the configuration file may be a reference instead of a literal:

    password = "env:SMTP_PASSWORD"          # the environment variable's value
    refresh_token = "file:/run/secrets/rt"  # the file's content, trailing newline cut

References are resolved once, when the configuration is loaded; a relative `file:`
path is taken from the config file's directory (`references_from`), like every
other relative path in it, and from the current directory without a config file.

A URL is shown (config show, logs, errors, support bundles) through
`mask_url_password`: its password and its secret query values become `***`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus, urlsplit

from cryptography.fernet import Fernet, InvalidToken

from outbox.errors import ConfigError

KEY_ENV = "OUTBOX_SECRET_KEY"
MASK = "***"
#: A query parameter whose name holds one of these is a secret: libpq's password and
#: sslpassword, client_secret, access_token, sslkey, ...
_SECRET_QUERY_WORDS = ("password", "secret", "token", "key")
# How SQLAlchemy reads the password of a database URL: up to the first "@", so it may
# hold an unencoded "/", "?" or "#" that a standard URL parser would not count in it.
# (A user name holding "@" is left to the standard parser.)
_SQLALCHEMY_PASSWORD = re.compile(r"[\w+]*(?:sql|postgres)[\w+]*://[^:/@]*:(?P<secret>[^@]*)@",
                                  re.IGNORECASE)
# name=value in a query, wherever it is; the value up to the next "&" (a "#" included).
_QUERY_PAIR = re.compile(r"[?&](?P<name>[^=&?#]*)=(?P<secret>[^&]*)")
# The directory relative `file:` references are read from; None: the current one.
_reference_base: ContextVar[Path | None] = ContextVar("reference_base", default=None)
KEY_HINT = (f"set {KEY_ENV} (from `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`) or [secrets] key_file")


@contextmanager
def references_from(directory: Path | None) -> Iterator[None]:
    """Within this block a relative `file:` reference is read from `directory`."""
    token = _reference_base.set(directory)
    try:
        yield
    finally:
        _reference_base.reset(token)


def resolve_reference(value: object) -> object:
    """`env:NAME` → the variable's value, `file:/path` → the file's content;
    anything else unchanged. Raises ValueError with a one-line reason."""
    if not isinstance(value, str):
        return value
    if value.startswith("env:"):
        return _from_env(value[4:])
    if value.startswith("file:"):
        return _from_file(value[5:])
    return value


def _from_env(name: str) -> str:
    if not name:
        raise ValueError("'env:' needs a variable name, like env:SMTP_PASSWORD")
    found = os.environ.get(name)
    if found is None:
        raise ValueError(f"environment variable {name} (from 'env:{name}') is not set")
    return found


def _from_file(path: str) -> str:
    if not path:
        raise ValueError("'file:' needs a path, like file:/run/secrets/smtp_password")
    base = _reference_base.get()
    full = base / path if base and not Path(path).is_absolute() else Path(path)
    try:
        return full.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read '{full}' (from 'file:{path}'): "
                         f"{exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"'{full}' (from 'file:{path}') is not UTF-8 text") from None


def mask_url_password(url: str) -> str:
    """The URL as it can be shown: `scheme://user:***@host/db?password=***`, every
    secret-looking query value masked too; anything else unchanged, character for
    character. A password is masked as a standard URL parser reads it and, in a database
    URL, as SQLAlchemy does: an unencoded "@", "/", "?" or "#" in it leaves no piece showing."""
    shown, end = [], 0
    for start, stop in _merged(sorted(_secret_spans(url))):
        shown += [url[end:start], MASK]
        end = stop
    return "".join([*shown, url[end:]])


def url_secrets(url: str) -> list[str]:
    """The secret pieces of a URL as written: what `mask_url_password` masks (its
    password, and each value of a query parameter named like a secret)."""
    return list(dict.fromkeys(url[start:stop] for start, stop in _secret_spans(url)
                              if stop > start))


def _secret_spans(url: str) -> Iterator[tuple[int, int]]:
    found = _SQLALCHEMY_PASSWORD.match(url)
    if found:
        yield found.span("secret")
    yield from _netloc_password_span(url)
    for pair in _QUERY_PAIR.finditer(url):
        if any(word in unquote_plus(pair["name"]).lower() for word in _SECRET_QUERY_WORDS):
            yield pair.span("secret")


def _netloc_password_span(url: str) -> Iterator[tuple[int, int]]:
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # a malformed [IPv6] host: SQLAlchemy's reading still applies
        return
    userinfo, at, _ = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    start = url.find(f"//{netloc}")
    if at and colon and start >= 0:
        start += len(f"//{user}:")
        yield start, start + len(password)


def _merged(spans: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Overlapping or touching spans as one; empty ones (`user:@host`) dropped."""
    current: tuple[int, int] | None = None
    for start, stop in spans:
        if start == stop:
            continue
        if current and start <= current[1]:
            current = (current[0], max(current[1], stop))
            continue
        if current:
            yield current
        current = (start, stop)
    if current:
        yield current


@dataclass(frozen=True, slots=True)
class SecretBox:
    """Seals and opens secrets with one Fernet key."""

    fernet: Fernet

    @classmethod
    def from_key(cls, key: bytes | str, where: str = KEY_ENV) -> SecretBox:
        try:
            return cls(Fernet(key))
        except (ValueError, TypeError):
            raise ConfigError(f"{where}: not a Fernet key (32 url-safe base64 bytes)",
                              hint=KEY_HINT) from None

    def seal(self, plain: str) -> str:
        return self.fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def open(self, sealed: str, what: str = "a stored secret") -> str:
        try:
            return self.fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            raise ConfigError(f"{what} cannot be decrypted with this secret key",
                              hint="give every node the key the secret was stored with "
                              f"({KEY_ENV} or [secrets] key_file)") from None


def open_box(database_url: str, key_file: str = "") -> SecretBox:
    """The box for this installation: OUTBOX_SECRET_KEY, else the key file
    (created with mode 0600 when it does not exist yet)."""
    key = os.environ.get(KEY_ENV, "").strip()
    if key:
        return SecretBox.from_key(key)
    path = Path(key_file) if key_file else default_key_file(database_url)
    return SecretBox.from_key(read_or_create_key(path), where=str(path))


def default_key_file(database_url: str) -> Path:
    """`<database file>.key` for SQLite; PostgreSQL nodes must be told."""
    if not database_url.startswith("sqlite:"):
        raise ConfigError("with PostgreSQL every node needs the same secret key",
                          hint=KEY_HINT)
    database = database_url.split(":///", 1)[-1].split("?", 1)[0]
    return Path(database).with_name(Path(database).name + ".key")


def read_or_create_key(path: Path) -> bytes:
    """The key in `path`; a new one, written with mode 0600, if the file is missing."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read the secret key file '{path}': {exc.strerror}") from None
    return _create_key(path)


def _create_key(path: Path) -> bytes:
    key = Fernet.generate_key()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot create the secret key file '{path}': {exc.strerror}") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key
