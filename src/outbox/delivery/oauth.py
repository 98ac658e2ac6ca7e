"""OAuth2 access tokens for XOAUTH2 relays: the refresh_token grant (RFC 6749 §6).

A `TokenSource` belongs to one relay's credentials. It asks the token
endpoint for an access token, keeps it until shortly before `expires_in`
runs out, and refreshes on demand when the relay rejects it (one refresh for
every rejected token, however many sessions noticed at once). A refresh
token the provider rotates is handed to `on_rotate` to be saved.

Each token response's `Date` header is compared with this machine's clock:
a skew above `MAX_SKEW` is kept as a `ClockSkew` for the caller to report,
since a wrong clock is a classic cause of rejected tokens.

Failures are `TokenError`s: `TokenRefreshFailed` when the endpoint refused
(the credentials need a person: the relay's mail is held) and
`TokenEndpointUnavailable` when it could not be asked or did not answer within
`TIMEOUT` (the mail is deferred).
Neither message ever carries a token or the client secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from outbox import __version__
from outbox.clock import utcnow
from outbox.config import OAuth2Settings
from outbox.core.report import Condition
from outbox.errors import DeliveryError

if TYPE_CHECKING:
    import httpx  # loads with the first refresh: most relays and commands need none

MAX_SKEW = timedelta(seconds=60)
EARLY_REFRESH = 60.0  # seconds before expiry, at most a tenth of the token's lifetime
DEFAULT_LIFETIME = 3600.0  # when the endpoint does not say
TIMEOUT = 30.0  # seconds for a whole token request, however the endpoint trickles
_DETAIL_LIMIT = 300


class TokenError(DeliveryError):
    """No OAuth2 access token."""

    condition: Condition = Condition.TOKEN_REFRESH_FAILED


class TokenRefreshFailed(TokenError):
    """The OAuth2 token endpoint refused to issue an access token."""

    code = "token_refresh_failed"
    condition = Condition.TOKEN_REFRESH_FAILED


class TokenEndpointUnavailable(TokenError):
    """The OAuth2 token endpoint could not be reached."""

    code = "token_endpoint_unavailable"
    condition = Condition.TOKEN_ENDPOINT_UNAVAILABLE


@dataclass(frozen=True, slots=True)
class ClockSkew:
    """This machine's clock minus a server's (positive: we are ahead)."""

    skew: timedelta
    source: str  # e.g. "the OAuth2 token endpoint login.example.com"

    def describe(self) -> str:
        seconds = abs(self.skew.total_seconds())
        side = "ahead of" if self.skew > timedelta(0) else "behind"
        return (f"this machine's clock is {seconds:.0f}s {side} {self.source}; OAuth2 tokens "
                "and TLS certificates need a correct clock: turn on time synchronisation (NTP)")


def clock_skew(theirs: datetime | None, now: datetime, source: str) -> ClockSkew | None:
    """The skew between our clock and a server's, if it exceeds `MAX_SKEW`. A time
    without a zone (RFC 5322 "-0000") is taken as UTC."""
    if theirs is None:
        return None
    skew = now - (theirs if theirs.tzinfo is not None else theirs.replace(tzinfo=UTC))
    return ClockSkew(skew, source) if abs(skew) > MAX_SKEW else None


def http_date(value: str | None) -> datetime | None:
    """An HTTP `Date` header's time, or None."""
    try:
        return parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    refresh_at: float  # on the source's clock


RotateHook = Callable[[str], Awaitable[None]]


class TokenSource:
    """Access tokens for one set of OAuth2 credentials."""

    def __init__(self, oauth: OAuth2Settings, *, http: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = utcnow,
                 on_rotate: RotateHook | None = None) -> None:
        self._oauth = oauth
        self._refresh_token = oauth.refresh_token.get_secret_value()
        self._http = http
        self._clock = clock
        self._wall = wall
        self._on_rotate = on_rotate
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        self._skew: ClockSkew | None = None
        self._issued: list[str] = []
        self.refreshes = 0

    @property
    def secrets(self) -> frozenset[str]:
        """Every secret this source knows: never to be shown anywhere."""
        known = [self._refresh_token, self._oauth.client_secret.get_secret_value(),
                 *self._issued]
        return frozenset(s for s in known if s)

    async def token(self) -> str:
        """A valid access token, from the cache while it is fresh."""
        current = self._token
        if current is not None and self._clock() < current.refresh_at:
            return current.value
        return await self.refresh(rejected=current.value if current else None)

    async def refresh(self, rejected: str | None = None) -> str:
        """A new access token. `rejected`: the token that failed; if another
        task already replaced it, that newer token is returned instead."""
        async with self._lock:
            current = self._token
            if current is not None and current.value != rejected and (
                    self._clock() < current.refresh_at):
                return current.value
            self._token = None
            self._token = await self._request()
            return self._token.value

    def adopt_refresh_token(self, refresh_token: str) -> None:
        """Use a refresh token rotated elsewhere (another node saved it)."""
        self._refresh_token = refresh_token

    def take_skew(self) -> ClockSkew | None:
        """The clock skew seen since the last call, if any (reported once)."""
        skew, self._skew = self._skew, None
        return skew

    async def _request(self) -> _Token:
        if not self._refresh_token:
            raise TokenRefreshFailed("no refresh token is configured", hint=_REAUTHORIZE)
        response = await self._post(_form(self._oauth, self._refresh_token))
        self.refreshes += 1
        self._skew = clock_skew(http_date(response.headers.get("date")), self._wall(),
                                f"the OAuth2 token endpoint {self._host}") or self._skew
        body = _json(response)
        if response.status_code >= 500 or response.status_code == 429:
            raise TokenEndpointUnavailable(f"the token endpoint {self._host} answered "
                                           f"{response.status_code}{_error_text(body)}")
        if response.status_code != 200 or not isinstance(body.get("access_token"), str):
            raise TokenRefreshFailed(self._refusal(response.status_code, body), hint=_REAUTHORIZE)
        await self._rotate(body.get("refresh_token"))
        return self._remember(body["access_token"], _lifetime(body.get("expires_in")))

    def _remember(self, value: str, lifetime: float) -> _Token:
        self._issued.append(value)
        del self._issued[:-8]  # the last few are enough for redaction
        early = min(EARLY_REFRESH, lifetime / 10)
        return _Token(value, self._clock() + lifetime - early)

    async def _rotate(self, new: Any) -> None:
        if not isinstance(new, str) or not new or new == self._refresh_token:
            return
        self._refresh_token = new
        if self._on_rotate is not None:
            await self._on_rotate(new)

    async def _post(self, form: dict[str, str]) -> httpx.Response:
        # httpx's timeouts bound each read, not the request: an endpoint that
        # sends a byte now and then would hold the AUTH (and this source's lock).
        import httpx

        try:
            async with asyncio.timeout(TIMEOUT):
                return await self._send(form)
        except TimeoutError as exc:
            raise TokenEndpointUnavailable(
                f"the token endpoint {self._host} did not answer within {TIMEOUT:g}s") from exc
        except httpx.HTTPError as exc:
            raise TokenEndpointUnavailable(
                f"the token endpoint {self._host} could not be reached "
                f"({type(exc).__name__})") from exc

    async def _send(self, form: dict[str, str]) -> httpx.Response:
        if self._http is not None:
            return await self._http.post(self._oauth.token_url, data=form)
        import httpx

        async with httpx.AsyncClient(timeout=TIMEOUT, headers=_HEADERS) as client:
            return await client.post(self._oauth.token_url, data=form)

    @property
    def _host(self) -> str:
        return urlsplit(self._oauth.token_url).netloc or self._oauth.token_url

    def _refusal(self, status: int, body: dict[str, Any]) -> str:
        text = f"the token endpoint {self._host} refused the refresh token ({status}" \
               f"{_error_text(body)})"
        return _scrub(text, self.secrets)


_REAUTHORIZE = ("re-authorize: run the provider's OAuth2 consent again, then give the new "
                "refresh token to `outbox relay set-credentials NAME`")
_HEADERS = {"User-Agent": f"outbox/{__version__}", "Accept": "application/json"}


def _form(oauth: OAuth2Settings, refresh_token: str) -> dict[str, str]:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": oauth.client_id}
    secret = oauth.client_secret.get_secret_value()
    if secret:
        form["client_secret"] = secret
    if oauth.scope:
        form["scope"] = oauth.scope
    return form


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_text(body: dict[str, Any]) -> str:
    """`: invalid_grant: Token has been revoked` from an RFC 6749 §5.2 error body."""
    parts = [str(body[k]) for k in ("error", "error_description") if body.get(k)]
    text = ": ".join(parts)
    return f": {text[:_DETAIL_LIMIT]}" if text else ""


def _lifetime(expires_in: Any) -> float:
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        return DEFAULT_LIFETIME
    return seconds if seconds > 0 else DEFAULT_LIFETIME


def _scrub(text: str, secrets: frozenset[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
