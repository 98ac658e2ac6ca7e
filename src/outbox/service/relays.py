"""Relays for operators: the use cases behind `outbox relay ...`,
`GET /v1/relays`, `PUT /v1/relays/{name}/credentials` and
`POST /v1/relays/{name}/test`.

New credentials are checked (`merge_credentials`), optionally tried against
the relay (a real login, nothing sent: `verify`), sealed and stored with a new
version by `delivery.credentials.CredentialVault`; the relay is set back to
`ok` and its held mail released. `clear_credentials` forgets stored ones, so
that the config file's apply again. A relay's status never carries a secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import SecretStr

from outbox.clock import utcnow
from outbox.config import OAuth2Settings, RelaySettings, Settings
from outbox.core import guidance as catalogue
from outbox.core.governor import GovernorState
from outbox.core.model import RecipientStatus
from outbox.core.relay_state import session_outcome
from outbox.core.report import Condition, Stage
from outbox.delivery.auth import authenticators_for
from outbox.delivery.credentials import (
    CredentialVault,
    auth_kind,
    oauth2_settings,
    with_credentials,
)
from outbox.delivery.oauth import TokenSource
from outbox.delivery.oauth_code import Authorization, authorization, exchange_code
from outbox.errors import (
    CredentialsIncomplete,
    DatabaseUnavailable,
    InputError,
    LoginNotVerified,
    NotFound,
    OutboxError,
)
from outbox.service.relay_backoff import BackoffEnded, end_backoff
from outbox.store.base import Message, RelayAuth, Store

if TYPE_CHECKING:
    from outbox.delivery.smtp.probe import ProbeResult

log = structlog.get_logger("outbox.relays")


@dataclass(frozen=True, slots=True)
class CredentialsUpdate:
    """What an operator gives; None keeps the current value."""

    username: str | None = None
    password: str | None = None
    refresh_token: str | None = None
    client_secret: str | None = None
    client_id: str | None = None
    token_url: str | None = None
    scope: str | None = None

    @property
    def touches_oauth2(self) -> bool:
        fields = (self.refresh_token, self.client_secret, self.client_id, self.token_url,
                  self.scope)
        return any(value is not None for value in fields)


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """A relay as operators see it: never a secret."""

    name: str
    host: str
    port: int
    security: str
    auth: str  # password | oauth2 | none
    username: str
    source: str  # config | stored (set through the CLI or API, or rotated)
    state: str  # ok | needs_attention
    reason: str
    guidance: str
    updated_at: datetime | None
    delivery: str = "open"  # open | backing_off | probing | throttled (core.governor)
    delivery_detail: str = "open"  # e.g. "backing off until ... after 3 failure(s): ..."
    session_limit: int = 0  # sessions at once allowed now
    backoff_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class DueNow:
    """A relay's mail that is due but no worker has claimed: it waits for the relay's
    room in the workers (worker/relay_room.py: a slow relay's share is full), or for a
    worker. Nothing else says so: the relay itself looks healthy."""

    count: int
    oldest: timedelta  # how long the longest-waiting of it has been due


@dataclass(frozen=True, slots=True)
class RelayTest:
    relay: RelaySettings
    result: ProbeResult
    released: int
    ended: BackoffEnded | None = None  # the back-off this test ended, if it was backing off
    # What the relay said when it refused mail for want of a login (none configured): a
    # probe sends no MAIL, so it cannot show that this is fixed, and releases nothing.
    refused_mail: str = ""

    @property
    def guidance(self) -> catalogue.Guidance | None:
        failure = self.result.failure
        if failure is None:
            return None
        outcome = session_outcome(failure)
        return catalogue.describe(outcome.guidance, outcome.reply)


# Why a login was not even tried: the fix is the relay's settings, not the credentials.
_NO_LOGIN = {
    Condition.AUTH_NOT_OFFERED: "if the relay needs no login, store none; if it offers AUTH "
                                "only over TLS, set its security to starttls or tls first",
    Condition.AUTH_NEEDS_TLS: "set the relay's security to starttls or tls (or "
                              "allow_insecure_auth on a trusted network), then set them again",
}


# --- an operator's update, checked ---------------------------------------------------------

def merge_credentials(relay: RelaySettings, update: CredentialsUpdate) -> RelaySettings:
    """`relay` with the update applied; InputError naming the field if unusable.
    Values are taken literally: an "env:..." here is not a reference."""
    username = relay.username if update.username is None else update.username.strip()
    if not username:
        # Blank is a bad value (422); left out, the relay has none to keep (409).
        refused = InputError if update.username is not None else CredentialsIncomplete
        raise refused("a username is needed (the account to log in as)", field="username")
    if update.password is not None:
        if not update.password:
            raise InputError("the password is empty", field="password")
        return with_credentials(relay, username, update.password, None)
    if update.touches_oauth2 or relay.oauth2 is not None:
        return with_credentials(relay, username, "", _merge_oauth2(relay.oauth2, update))
    if relay.password.get_secret_value() and update.username is not None:
        return with_credentials(relay, username, relay.password.get_secret_value(), None)
    raise CredentialsIncomplete("give a password, or an OAuth2 refresh token", field="password")


def _merge_oauth2(base: OAuth2Settings | None, update: CredentialsUpdate) -> OAuth2Settings:
    def pick(name: str) -> str:
        given = getattr(update, name)
        if given is not None:
            return str(given).strip()
        current = getattr(base, name, "") if base is not None else ""
        return current.get_secret_value() if isinstance(current, SecretStr) else str(current)

    values = {name: pick(name) for name in
              ("token_url", "client_id", "client_secret", "refresh_token", "scope")}
    for name in ("token_url", "client_id", "refresh_token"):
        if not values[name]:
            raise CredentialsIncomplete(f"OAuth2 needs {name}", field=f"oauth2.{name}")
    if not values["token_url"].startswith(("https://", "http://")):
        raise InputError("token_url must start with https://", field="oauth2.token_url")
    return oauth2_settings(values)


# --- the use cases ----------------------------------------------------------------------

class Relays:
    """The `relays` facet of the service."""

    def __init__(self, settings: Settings, store: Store, vault: CredentialVault, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.vault = vault
        self._clock = clock

    def relay(self, name: str) -> RelaySettings:
        try:
            return self.settings.relay(name)
        except KeyError:
            known = ", ".join(r.name for r in self.settings.relays) or "none"
            raise NotFound(f"no relay named '{name}' (known: {known})") from None

    async def current(self, name: str) -> tuple[RelaySettings, RelayAuth]:
        """The relay's settings with its stored credentials applied, and its state."""
        relay = self.relay(name)
        auth = await self.store.relay_auth.load_relay_credentials(name)
        return self.vault.effective(relay, auth), auth

    async def set_credentials(self, name: str, update: CredentialsUpdate, *,
                              verify: bool = False) -> tuple[RelayStatus, int]:
        """Store new credentials, mark the relay ok and release its held mail.
        With `verify`, log in with them first (nothing sent) and store nothing
        unless the relay accepts them (`LoginNotVerified` says what it answered).
        Returns the relay's status and how many messages were released."""
        relay, _ = await self.current(name)
        merged = merge_credentials(relay, update)
        if verify:
            merged = await self._verified(merged)
        now = self._clock()
        version, released = await self.store.relay_auth.store_credentials(
            name, self.vault.seal(merged), now)
        log.info("relay credentials stored", relay=name, auth=auth_kind(merged),
                 version=version, released=released)
        return await self.status(name), released

    async def _verified(self, relay: RelaySettings) -> RelaySettings:
        """`relay` once a login with its credentials worked (with the refresh token
        the provider rotated to, if it did); LoginNotVerified if it did not."""
        rotated: list[str] = []

        async def keep_rotated(token: str) -> None:
            rotated.append(token)

        from outbox.delivery.smtp.probe import probe  # aiosmtplib: only to test a relay

        tokens = TokenSource(relay.oauth2, on_rotate=keep_rotated) if relay.oauth2 else None
        result = await probe(relay, self.settings.delivery,
                             authenticators=authenticators_for(relay, tokens))
        failure = result.failure
        if failure is not None:
            said = str(failure.reply or failure.detail or failure.condition or "failed")
            guidance = RelayTest(relay, result, 0).guidance
            where = f"relay {relay.name}: {relay.host}:{relay.port}"
            if failure.condition in _NO_LOGIN:  # nothing to check outside Outbox
                raise LoginNotVerified(f"{where} could not log in ({said}); nothing stored",
                                       hint=_NO_LOGIN[failure.condition])
            if failure.stage is Stage.AUTH:
                raise LoginNotVerified(f"{where} refused the login ({said}); nothing stored")
            raise LoginNotVerified(
                f"{where} could not verify the login (at {failure.stage.value}: {said}); "
                "nothing stored", hint=guidance.next_step.rstrip(".") if guidance else None)
        if rotated and relay.oauth2 is not None:
            oauth = relay.oauth2.model_copy(update={"refresh_token": SecretStr(rotated[-1])})
            return relay.model_copy(update={"oauth2": oauth})
        return relay

    async def clear_credentials(self, name: str) -> tuple[RelayStatus, bool]:
        """Forget the relay's stored credentials so that the config file's apply
        again (the relay is set ok and its held mail released, as with new ones).
        Returns its status and whether there were any stored."""
        self.relay(name)
        had = (await self.store.relay_auth.load_relay_credentials(name)).credentials is not None
        if had:
            version, released = await self.store.relay_auth.store_credentials(
                name, None, self._clock())
            log.info("relay credentials cleared; the config file's apply", relay=name,
                     version=version, released=released)
        return await self.status(name), had

    async def oauth2_authorization(self, name: str, redirect_uri: str) -> Authorization:
        """Where to send a person to consent for this relay (code flow with PKCE)."""
        oauth = (await self.current(name))[0].oauth2
        if oauth is None or not oauth.authorize_url:
            raise InputError(f"relay {name} has no oauth2 authorize_url", field="relay",
                             hint=f"set oauth2 = {{ authorize_url = ..., token_url = ..., "
                                  f"client_id = ... }} on relay {name} in the config")
        return authorization(oauth, redirect_uri)

    async def connect_oauth2(self, name: str, code: str, verifier: str,
                             redirect_uri: str) -> tuple[RelayStatus, int]:
        """Exchange the code for a refresh token and store it as `set_credentials` does."""
        oauth = (await self.current(name))[0].oauth2
        if oauth is None:
            raise InputError(f"relay {name} does not log in with OAuth2", field="relay")
        refresh = await exchange_code(oauth, code, verifier, redirect_uri)
        return await self.set_credentials(name, CredentialsUpdate(refresh_token=refresh))

    async def status(self, name: str) -> RelayStatus:
        relay = self.relay(name)
        return self._status(relay, await self.store.relay_auth.load_relay_credentials(name),
                            await self.store.governor.load_governor_state(name))

    async def statuses(self) -> list[RelayStatus]:
        stored = {auth.relay: auth for auth in await self.store.relay_auth.relay_states()}
        paced = {g.relay: g for g in await self.store.governor.governor_states()}
        return [self._status(r, stored.get(r.name, RelayAuth(r.name)),
                             paced.get(r.name, GovernorState(r.name)))
                for r in self.settings.relays]

    async def queue_now(self) -> tuple[dict[str, DueNow], dict[str, int]]:
        """By relay, its mail due now and not being delivered, and how many of its
        messages are `sending` (a relay with none: left out of each). A walk of the due
        and the sending mail (`stats(now)`): for an operator's look, not for a loop."""
        now = self._clock()
        stats = await self.store.messages.stats(now)
        return ({name: DueNow(d.count, now - d.oldest_due_at)
                 for name, d in stats.due_by_relay.items()}, dict(stats.sending_by_relay))

    async def held_back(self, message: Message) -> list[RelayStatus]:
        """The relays backing off that `message`'s unsent recipients wait for: a retry
        queues it now, and it still goes only when they end their back-off."""
        waiting = {r.relay for r in message.recipients if r.status is not RecipientStatus.SENT}
        now = self._clock()
        return [status for status in await self.statuses() if status.name in waiting
                and status.backoff_until is not None and status.backoff_until > now]

    async def held_back_or_unknown(self, message: Message) -> list[RelayStatus] | None:
        """`held_back`, for the answer to a retry that is stored: None if the database
        was lost before the back-offs were read. The CLI and the UI answered that with
        "nothing was stored", which sends the operator to retry again (the API's answer
        had the same fault: `Messages.get_after_change`)."""
        try:
            return await self.held_back(message)
        except DatabaseUnavailable as exc:
            log.warning("relay back-offs not read after a retry; answered without them",
                        message=message.id, error=exc.one_line())
            return None

    def _status(self, relay: RelaySettings, auth: RelayAuth,
                paced: GovernorState) -> RelayStatus:
        try:
            effective = self.vault.effective(relay, auth)
        except OutboxError:  # no key here to open them: show what the config says
            effective = relay
        return RelayStatus(
            name=relay.name, host=relay.host, port=relay.port, security=relay.security,
            auth=auth_kind(effective), username=effective.username,
            source="config" if auth.credentials is None else "stored", state=auth.state,
            reason=auth.reason, guidance=auth.guidance, updated_at=auth.updated_at,
            **_delivery(relay, paced, self._clock()))

    async def test(self, name: str) -> RelayTest:
        """Log in without sending (connect, EHLO, TLS, AUTH, QUIT). A relay that
        needed attention and now logs in is set ok and its held mail released; a relay
        that was backing off is open again, the mail its back-off held back due now."""
        relay, auth = await self.current(name)

        async def keep_rotated(token: str) -> None:
            await self.vault.save_rotated(relay, auth.version, token)

        from outbox.delivery.smtp.probe import probe  # aiosmtplib: only to test a relay

        tokens = TokenSource(relay.oauth2, on_rotate=keep_rotated) if relay.oauth2 else None
        result = await probe(relay, self.settings.delivery,
                             authenticators=authenticators_for(relay, tokens))
        released, ended = 0, None
        refused_mail = auth.reason if auth.guidance == catalogue.LOGIN_REQUIRED else ""
        if result.ok and auth.needs_attention and not refused_mail:
            released = await self.vault.mark_ok(name, auth.version)
        if result.ok:
            ended = await end_backoff(self.store, self.settings, relay, self._clock())
        return RelayTest(relay, result, released, ended, refused_mail)


def _delivery(relay: RelaySettings, paced: GovernorState, now: datetime) -> dict[str, Any]:
    """The governor's side of a relay's status (the same reading as /metrics)."""
    return {"delivery": paced.state(now).value, "delivery_detail": paced.describe(now),
            "session_limit": paced.limit or relay.max_connections,
            "backoff_until": paced.backoff_until}
