"""AUTH PLAIN and LOGIN (RFC 4616, draft-murchison-sasl-login) for the listener: the
user name is an API key's name, the password the key, checked by the service
(`outbox.keys.authenticate_login`), asynchronously.

aiosmtpd's own mechanisms call a synchronous authenticator, which cannot ask the
database about keys made with `outbox keys create`; these replace them (a
handler's `auth_<MECHANISM>` methods take precedence). Whether AUTH is allowed
before TLS is the listener's decision, made before these run.

A login holds only while its key does: every MAIL asks again (`recheck`), as every
HTTP request does, so a key revoked or stripped of `send` sends nothing more on a
session that logged in with it before.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, cast

import structlog
from aiosmtpd.smtp import SMTP, AuthResult

from outbox.errors import AuthError, OutboxError
from outbox.service.keys import ApiKeys, Principal, digest
from outbox.submission import replies

log = structlog.get_logger("outbox.submission")
Credentials = tuple[str, str]  # (key name, key)
SEND_SCOPES = frozenset({"send", "admin"})


@dataclass(frozen=True, slots=True)
class Login:
    """Who is logged in on a connection, and how to ask whether they still may send:
    after AUTH by the key's digest (a key revoked and made again under the same name is
    another key, which this password is not); for a trusted network by name (whichever
    key submission.trusted_key names now)."""

    principal: Principal
    key_digest: str | None = None  # None: logged in as submission.trusted_key


async def read_plain(server: SMTP, args: list[str]) -> Credentials | None:
    """`AUTH PLAIN [initial-response]`: authzid NUL authcid NUL password. None when
    the client's answer was unusable (the reply is already sent)."""
    blob: object = (await server.challenge_auth("") if len(args) == 1
                    else await _decoded(server, args[1]))
    if not isinstance(blob, bytes):  # MISSING or None: the reply went out already
        return None
    parts = blob.split(b"\x00")
    if len(parts) != 3:
        await server.push("501 5.5.2 Cannot split the PLAIN response")
        return None
    return await _texts(server, parts[1], parts[2])


async def read_login(server: SMTP, args: list[str]) -> Credentials | None:
    """`AUTH LOGIN [user]`, then the password on a challenge."""
    user: object = (await server.challenge_auth(server.AuthLoginUsernameChallenge)
                    if len(args) == 1 else await _decoded(server, args[1]))
    if not isinstance(user, bytes):
        return None
    password = await server.challenge_auth(server.AuthLoginPasswordChallenge)
    if not isinstance(password, bytes):
        return None
    return await _texts(server, user, password)


async def log_in(keys: ApiKeys, server: SMTP, credentials: Credentials | None) -> AuthResult:
    """The AUTH verdict: success with the `Principal` as auth data, or the reply."""
    if credentials is None:
        return AuthResult(success=False)  # handled: the reply went out already
    name, key = credentials
    try:
        principal = await keys.authenticate_login(name, key)
    except AuthError:
        log.info("smtp login refused", user=name, peer=_peer(server))
        return AuthResult(success=False, handled=False, message=replies.AUTH_FAILED)
    except OutboxError as exc:  # the database could not be asked
        log.warning("smtp login could not be checked", user=name, error=exc.message)
        return AuthResult(success=False, handled=False, message=replies.AUTH_UNAVAILABLE)
    if not principal.scopes & SEND_SCOPES:
        return AuthResult(success=False, handled=False, message=replies.SCOPE_MISSING)
    return AuthResult(success=True, auth_data=Login(principal, digest(key)))


async def trusted_login(keys: ApiKeys, server: SMTP, name: str) -> str | None:
    """Log a client of submission.trusted_networks in as the key `name`: None once done,
    else the reply that says why not (a 4xx: the client keeps its message)."""
    session = server.session
    assert session is not None
    try:
        principal = await keys.principal_named(name)
    except AuthError:
        principal = None
    except OutboxError as exc:  # the database could not be asked
        log.warning("trusted smtp client could not be logged in", user=name,
                    error=exc.message)
        return replies.AUTH_UNAVAILABLE
    if principal is None or not principal.scopes & SEND_SCOPES:
        log.warning("trusted smtp client refused: submission.trusted_key is no active key "
                    "with the send scope", user=name, peer=_peer(server))
        return replies.trusted_key_unusable(name)
    session.authenticated = True
    session.auth_data = cast(Any, Login(principal))  # aiosmtpd's Session declares it None
    return None


async def recheck(keys: ApiKeys, server: SMTP) -> str | None:
    """Ask again, at MAIL, whether this connection's key may still send: None if so (its
    scopes and limits as they are now), else the reply, and the session is logged out
    so that the client can AUTH again with a key that may."""
    login = login_of(server)
    session = server.session
    assert session is not None
    name = login.principal.name
    try:
        principal = await (keys.principal_named(name) if login.key_digest is None
                           else keys.principal_of_digest(login.key_digest))
    except AuthError:
        principal = None
    except OutboxError as exc:  # the database could not be asked
        log.warning("smtp login could not be checked again", user=name, error=exc.message)
        return replies.AUTH_UNAVAILABLE
    if principal is not None and principal.scopes & SEND_SCOPES:
        session.auth_data = cast(Any, Login(principal, login.key_digest))
        return None
    session.authenticated, session.auth_data = False, None
    log.info("smtp login ended: its key was revoked or lost the send scope", user=name,
             peer=_peer(server))
    if login.key_digest is None:
        return replies.trusted_key_unusable(name)
    return replies.key_revoked(name) if principal is None else replies.send_scope_lost(name)


def login_of(server: SMTP) -> Login:
    """Who logged in on this connection (MAIL is refused before AUTH succeeds, or before
    a trusted client is logged in as submission.trusted_key)."""
    assert server.session is not None
    login = server.session.auth_data
    assert isinstance(login, Login)
    return login


def principal_of(server: SMTP) -> Principal:
    return login_of(server).principal


async def _decoded(server: SMTP, text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        await server.push("501 5.5.2 Cannot decode the base64 response")
        return None


async def _texts(server: SMTP, user: bytes, password: bytes) -> Credentials | None:
    try:
        return user.decode("utf-8"), password.decode("utf-8")
    except UnicodeDecodeError:
        await server.push("501 5.5.2 The user name and password must be UTF-8")
        return None


def _peer(server: SMTP) -> str:
    peer = server.session.peer if server.session is not None else None
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)
