"""SASL mechanisms for relay login: PLAIN, LOGIN and XOAUTH2.

A mechanism talks to the relay only through an `AuthChannel` (the session's
`exchange`), which records every line redacted; it never sees aiosmtplib.

XOAUTH2 (Google, Microsoft 365) sends `user=<mailbox>^Aauth=Bearer <token>^A^A`
in base64. A relay that rejects the token answers `334 <base64 JSON error>`;
the client answers with an empty line and gets the final `535 5.7.8`. A
rejected token leads to exactly one refresh and one more try.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Protocol

from outbox.config import RelaySettings
from outbox.core.model import Reply
from outbox.core.replies import ReplyCode
from outbox.core.report import Condition
from outbox.delivery.oauth import TokenSource
from outbox.delivery.transcript import secret_forms


class AuthChannel(Protocol):
    async def exchange(self, line: bytes, *, secret: bool = True) -> Reply:
        """Send one line of the AUTH exchange; the transcript shows it redacted."""
        ...


class Authenticator(Protocol):
    """One SASL mechanism with its credentials."""

    mechanism: str  # as EHLO advertises it: PLAIN, LOGIN, XOAUTH2

    @property
    def secrets(self) -> frozenset[str]:
        """Strings that must never reach a transcript."""
        ...

    async def authenticate(self, channel: AuthChannel) -> Reply:
        """Run the exchange; return the server's final reply (235 on success)."""
        ...


class PlainAuth:
    mechanism = "PLAIN"

    def __init__(self, username: str, password: str) -> None:
        self._blob = _b64(f"\0{username}\0{password}".encode())
        self.secrets = frozenset(secret_forms(username, password))

    async def authenticate(self, channel: AuthChannel) -> Reply:
        return await channel.exchange(b"AUTH PLAIN " + self._blob)


class LoginAuth:
    mechanism = "LOGIN"

    def __init__(self, username: str, password: str) -> None:
        self._username = _b64(username.encode())
        self._password = _b64(password.encode())
        self.secrets = frozenset(secret_forms(username, password))

    async def authenticate(self, channel: AuthChannel) -> Reply:
        reply = await channel.exchange(b"AUTH LOGIN", secret=False)
        for answer in (self._username, self._password):
            if reply.code != ReplyCode.AUTH_CONTINUE:
                return reply
            reply = await channel.exchange(answer)
        return reply


class XOAuth2Auth:
    mechanism = "XOAUTH2"

    def __init__(self, username: str, tokens: TokenSource) -> None:
        self._username = username
        self.tokens = tokens

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(_with_forms(self.tokens.secrets, self._username))

    async def authenticate(self, channel: AuthChannel) -> Reply:
        """Raises `oauth.TokenError` when no access token can be had."""
        token = await self.tokens.token()
        reply = await self._try(channel, token)
        if not _is_rejection(reply):
            return reply
        return await self._try(channel, await self.tokens.refresh(rejected=token))

    async def _try(self, channel: AuthChannel, token: str) -> Reply:
        blob = _b64(f"user={self._username}\x01auth=Bearer {token}\x01\x01".encode())
        reply = await channel.exchange(b"AUTH XOAUTH2 " + blob)
        if reply.code == ReplyCode.AUTH_CONTINUE:  # an error payload; an empty line ends it
            reply = await channel.exchange(b"")
        return reply


def _is_rejection(reply: Reply) -> bool:
    """The token was refused (535, or any 5.7.x): worth one fresh token."""
    return reply.code == 535 or (reply.is_permanent and (reply.enhanced or "").startswith("5.7."))


def _with_forms(secrets: Iterable[str], username: str) -> set[str]:
    forms = set()
    for secret in secrets:
        forms |= secret_forms(username, secret)
    return forms


def authenticators_for(relay: RelaySettings, tokens: TokenSource | None = None
                       ) -> list[Authenticator]:
    """The mechanisms the relay's credentials allow, preferred first. An
    oauth2 relay uses `tokens` (a source that caches), else a fresh one."""
    if relay.oauth2 is not None and relay.username:
        return [XOAuth2Auth(relay.username, tokens or TokenSource(relay.oauth2))]
    password = relay.password.get_secret_value()
    if not relay.username or not password:
        return []
    return [PlainAuth(relay.username, password), LoginAuth(relay.username, password)]


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def choose_authenticator(authenticators: Sequence[Authenticator], offered: Sequence[str], *,
                         safe: bool) -> Authenticator | tuple[Condition, str]:
    """Ours that the relay offers, first match; or why no AUTH may be sent. `safe`:
    the connection may carry credentials (TLS, loopback, or allow_insecure_auth)."""
    if not safe:
        return (Condition.AUTH_NEEDS_TLS, "AUTH is only sent over TLS; use "
                "security = \"starttls\" or \"tls\" (or allow_insecure_auth)")
    for authenticator in authenticators:
        if authenticator.mechanism in offered:
            return authenticator
    ours = ", ".join(a.mechanism for a in authenticators)
    if offered and ours:  # it offers some, just not ours (XOAUTH2 for an oauth2 relay)
        return (Condition.AUTH_NOT_OFFERED,
                f"the relay does not offer {' or '.join(a.mechanism for a in authenticators)} "
                f"(it offers {', '.join(offered)})")
    return (Condition.AUTH_NOT_OFFERED,
            f"the relay offers {', '.join(offered) or 'no AUTH'}; Outbox "
            + (f"can use {ours}" if ours else "has no mechanism for these credentials"))
