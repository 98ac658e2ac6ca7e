"""Relay credentials and relay state: the use cases behind `outbox relay ...`,
`PUT /v1/relays/{name}/credentials` and the worker's relay gates.

Credentials set through the CLI or API are sealed (`outbox.secrets`) and
stored with a new version; from then on they take precedence over the config
file's, on every node (each node's gate notices the version). A refresh token
the provider rotates is saved the same way, keeping the version.

A relay whose login fails is `needs_attention`: all its waiting mail is held
(no attempt counted, nothing failed) with an alert event naming the fix. New
credentials, or a successful `outbox relay test`, set it back to `ok` and
release the held mail.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import SecretStr

from outbox.clock import utcnow
from outbox.config import OAuth2Settings, RelaySettings, Settings
from outbox.core import guidance as catalogue
from outbox.core.classify import classify
from outbox.core.model import Event, EventType, Outcome
from outbox.core.report import DeliveryReport
from outbox.delivery.auth import authenticators_for
from outbox.delivery.oauth import TokenSource
from outbox.delivery.transport import ProbeResult, probe
from outbox.errors import InputError, NotFound, OutboxError
from outbox.secrets import SecretBox, open_box
from outbox.store.base import NEEDS_ATTENTION, RELAY_OK, RelayAuth, Store

log = structlog.get_logger("outbox.credentials")

PASSWORD, OAUTH2, NO_LOGIN = "password", "oauth2", "none"


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


@dataclass(frozen=True, slots=True)
class RelayTest:
    relay: RelaySettings
    result: ProbeResult
    released: int

    @property
    def guidance(self) -> catalogue.Guidance | None:
        failure = self.result.failure
        if failure is None:
            return None
        report = DeliveryReport(relay=self.relay.name, recipients=("test",), failure=failure)
        outcome = classify(report)["test"]
        return catalogue.describe(outcome.guidance, outcome.reply)


def auth_kind(relay: RelaySettings) -> str:
    if relay.oauth2 is not None:
        return OAUTH2
    return PASSWORD if relay.password.get_secret_value() else NO_LOGIN


# --- credentials as values: merge, seal, apply -------------------------------------------

def merge_credentials(relay: RelaySettings, update: CredentialsUpdate) -> RelaySettings:
    """`relay` with the update applied; InputError naming the field if unusable.
    Values are taken literally: an "env:..." here is not a reference."""
    username = relay.username if update.username is None else update.username.strip()
    if not username:
        raise InputError("a username is needed (the account to log in as)", field="username")
    if update.password is not None:
        if not update.password:
            raise InputError("the password is empty", field="password")
        return with_credentials(relay, username, update.password, None)
    if update.touches_oauth2 or relay.oauth2 is not None:
        return with_credentials(relay, username, "", _merge_oauth2(relay.oauth2, update))
    if relay.password.get_secret_value() and update.username is not None:
        return with_credentials(relay, username, relay.password.get_secret_value(), None)
    raise InputError("give a password, or an OAuth2 refresh token", field="password")


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
            raise InputError(f"OAuth2 needs {name}", field=f"oauth2.{name}")
    if not values["token_url"].startswith(("https://", "http://")):
        raise InputError("token_url must start with https://", field="oauth2.token_url")
    return oauth2_settings(values)


def oauth2_settings(values: dict[str, str]) -> OAuth2Settings:
    """Built without validation, so that no value is read as an env:/file: reference."""
    return OAuth2Settings.model_construct(
        token_url=values["token_url"], client_id=values["client_id"],
        client_secret=SecretStr(values.get("client_secret", "")),
        refresh_token=SecretStr(values["refresh_token"]), scope=values.get("scope", ""))


def with_credentials(relay: RelaySettings, username: str, password: str,
                     oauth2: OAuth2Settings | None) -> RelaySettings:
    return relay.model_copy(update={"username": username, "password": SecretStr(password),
                                    "oauth2": oauth2})


def credentials_json(relay: RelaySettings) -> str:
    body: dict[str, Any] = {"username": relay.username}
    if relay.oauth2 is not None:
        o = relay.oauth2
        body["oauth2"] = {"token_url": o.token_url, "client_id": o.client_id,
                          "client_secret": o.client_secret.get_secret_value(),
                          "refresh_token": o.refresh_token.get_secret_value(), "scope": o.scope}
    else:
        body["password"] = relay.password.get_secret_value()
    return json.dumps(body)


def apply_credentials(relay: RelaySettings, plain: str) -> RelaySettings:
    body = json.loads(plain)
    oauth2 = oauth2_settings(body["oauth2"]) if body.get("oauth2") else None
    return with_credentials(relay, body.get("username", ""), body.get("password", ""), oauth2)


def attention_guidance(relay: RelaySettings, outcome: Outcome) -> str:
    """The guidance key for a relay whose login failed with `outcome`."""
    if relay.oauth2 is not None and outcome.reply is not None:
        return "oauth_token_rejected"  # refreshed and retried, and still refused
    return outcome.guidance


# --- the use cases ----------------------------------------------------------------------

class RelayCredentials:
    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], datetime] = utcnow, box: SecretBox | None = None) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock
        self._box_value = box

    def relay(self, name: str) -> RelaySettings:
        try:
            return self.settings.relay(name)
        except KeyError:
            known = ", ".join(r.name for r in self.settings.relays) or "none"
            raise NotFound(f"no relay named '{name}' (known: {known})") from None

    def box(self) -> SecretBox:
        if self._box_value is None:
            self._box_value = open_box(self.settings.database.url,
                                       self.settings.secrets.key_file)
        return self._box_value

    async def current(self, name: str) -> tuple[RelaySettings, RelayAuth]:
        """The relay's settings with its stored credentials applied, and its state."""
        relay = self.relay(name)
        auth = await self.store.load_relay_credentials(name)
        return self.effective(relay, auth), auth

    def effective(self, relay: RelaySettings, auth: RelayAuth) -> RelaySettings:
        if auth.credentials is None:
            return relay
        what = f"the stored credentials of relay '{relay.name}'"
        return apply_credentials(relay, self.box().open(auth.credentials, what))

    async def set_credentials(self, name: str, update: CredentialsUpdate) -> tuple[
            RelayStatus, int]:
        """Store new credentials, mark the relay ok and release its held mail.
        Returns the relay's status and how many messages were released."""
        relay, _ = await self.current(name)
        merged = merge_credentials(relay, update)
        now = self._clock()
        version = await self.store.save_relay_credentials(
            name, self.box().seal(credentials_json(merged)), now)
        await self.store.set_relay_state(name, RELAY_OK, "", "", now, version=version)
        released = await self.store.release_relay(name, now)
        log.info("relay credentials stored", relay=name, auth=auth_kind(merged),
                 version=version, released=released)
        return await self.status(name), released

    async def save_rotated(self, relay: RelaySettings, version: int,
                           refresh_token: str) -> str | None:
        """Keep a refresh token the provider rotated (same version); returns the
        sealed credentials as stored, or None if they were not."""
        if relay.oauth2 is None:
            return None
        values = {"token_url": relay.oauth2.token_url, "client_id": relay.oauth2.client_id,
                  "client_secret": relay.oauth2.client_secret.get_secret_value(),
                  "refresh_token": refresh_token, "scope": relay.oauth2.scope}
        rotated = with_credentials(relay, relay.username, "", oauth2_settings(values))
        try:
            sealed = self.box().seal(credentials_json(rotated))
            saved = await self.store.rotate_relay_credentials(relay.name, sealed, version,
                                                              self._clock())
        except OutboxError as exc:
            log.warning("the provider rotated the refresh token but it could not be saved",
                        relay=relay.name, error=exc.one_line())
            return None
        log.info("rotated refresh token saved", relay=relay.name, saved=saved)
        return sealed if saved else None

    async def mark_needs_attention(self, relay: RelaySettings, version: int,
                                   outcome: Outcome) -> int:
        """The relay's login failed with the credentials of `version`: hold all its
        waiting mail with an alert event. Returns how many messages were held."""
        if (await self.store.load_relay_credentials(relay.name)).version != version:
            return 0  # new credentials arrived meanwhile: they get their own chance
        key = attention_guidance(relay, outcome)
        reply = outcome.reply
        reason = str(reply) if reply is not None else outcome.detail
        now = self._clock()
        changed = await self.store.set_relay_state(relay.name, NEEDS_ATTENTION, reason, key,
                                                   now, version=version)
        event = Event(now, EventType.ALERT, reply_code=reply.code if reply else None,
                      enhanced_code=reply.enhanced if reply else None,
                      reply=reply.text if reply else None, guidance=key,
                      detail=_attention_detail(relay.name, outcome.detail))
        held = await self.store.hold_relay(relay.name, now, f"relay {relay.name} needs "
                                           f"attention: {catalogue.describe(key).title}", event)
        if changed:
            log.warning("relay needs attention; its mail is held", relay=relay.name,
                        reason=reason, guidance=key, held=held,
                        fix=catalogue.describe(key).next_step)
        return held

    async def mark_ok(self, name: str, version: int) -> int:
        """The relay's login works again: release its held mail."""
        now = self._clock()
        if not await self.store.set_relay_state(name, RELAY_OK, "", "", now, version=version):
            return 0
        released = await self.store.release_relay(name, now)
        log.info("relay login works again; its held mail is released", relay=name,
                 released=released)
        return released

    async def status(self, name: str) -> RelayStatus:
        relay = self.relay(name)
        return self._status(relay, await self.store.load_relay_credentials(name))

    async def statuses(self) -> list[RelayStatus]:
        stored = {auth.relay: auth for auth in await self.store.relay_states()}
        return [self._status(r, stored.get(r.name, RelayAuth(r.name)))
                for r in self.settings.relays]

    def _status(self, relay: RelaySettings, auth: RelayAuth) -> RelayStatus:
        try:
            effective = self.effective(relay, auth)
        except OutboxError:  # no key here to open them: show what the config says
            effective = relay
        return RelayStatus(
            name=relay.name, host=relay.host, port=relay.port, security=relay.security,
            auth=auth_kind(effective), username=effective.username,
            source="config" if auth.credentials is None else "stored", state=auth.state,
            reason=auth.reason, guidance=auth.guidance, updated_at=auth.updated_at)

    async def test(self, name: str) -> RelayTest:
        """Log in without sending (connect, EHLO, TLS, AUTH, QUIT). A relay that
        needed attention and now logs in is set ok and its held mail released."""
        relay, auth = await self.current(name)

        async def keep_rotated(token: str) -> None:
            await self.save_rotated(relay, auth.version, token)

        tokens = TokenSource(relay.oauth2, on_rotate=keep_rotated) if relay.oauth2 else None
        result = await probe(relay, self.settings.delivery,
                             authenticators=authenticators_for(relay, tokens))
        released = 0
        if result.ok and auth.needs_attention:
            released = await self.mark_ok(name, auth.version)
        return RelayTest(relay, result, released)


def _attention_detail(relay: str, detail: str) -> str:
    text = (f"relay {relay} needs attention: its login failed, so all its mail is held (no "
            f"attempt counted) until `outbox relay set-credentials {relay}` or "
            f"PUT /v1/relays/{relay}/credentials")
    return f"{text}; {detail}" if detail else text
