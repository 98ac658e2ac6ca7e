"""A relay's credentials as the delivery edge uses them: sealed at rest, opened
to log in, and the relay's login state.

Credentials set through the CLI or API are sealed (`outbox.secrets`) and
stored with a new version; from then on they take precedence over the config
file's, on every node (each node's gate notices the version). A refresh token
the provider rotates is saved the same way, keeping the version.

A relay whose login fails is `needs_attention`: all its waiting mail is held
(no attempt counted, nothing failed) with an alert event naming the fix
(`CredentialVault.mark_needs_attention`). So is a relay that could not log in
at all (no login configured where one is required, none sent in clear, no usable
method, no OAuth2 token), and its words say that instead (`core.attention`). New
credentials, or a login that works again, set it back to `ok` and release that mail.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from pydantic import SecretStr

from outbox.clock import utcnow
from outbox.config import OAuth2Settings, RelaySettings, Settings
from outbox.core import guidance as catalogue
from outbox.core.attention import attention_cause, login_tried
from outbox.core.model import Event, EventType, Outcome
from outbox.errors import OutboxError
from outbox.secrets import SecretBox, open_box
from outbox.store.base import RelayAuth, Store

log = structlog.get_logger("outbox.credentials")

PASSWORD, OAUTH2, NO_LOGIN = "password", "oauth2", "none"


def auth_kind(relay: RelaySettings) -> str:
    if relay.oauth2 is not None:
        return OAUTH2
    return PASSWORD if relay.password.get_secret_value() else NO_LOGIN


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


class CredentialVault:
    """Seals and opens stored credentials and moves a relay between `ok` and
    `needs_attention`, holding or releasing its mail."""

    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], datetime] = utcnow, box: SecretBox | None = None) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock
        self._box_value = box

    def box(self) -> SecretBox:
        if self._box_value is None:
            self._box_value = open_box(self.settings.database.url,
                                       self.settings.secrets.key_file)
        return self._box_value

    def effective(self, relay: RelaySettings, auth: RelayAuth) -> RelaySettings:
        """The relay's settings with its stored credentials (if any) applied."""
        if auth.credentials is None:
            return relay
        what = f"the stored credentials of relay '{relay.name}'"
        return apply_credentials(relay, self.box().open(auth.credentials, what))

    def seal(self, relay: RelaySettings) -> str:
        return self.box().seal(credentials_json(relay))

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
            sealed = self.seal(rotated)
            saved = await self.store.relay_auth.rotate_relay_credentials(
                relay.name, sealed, version, self._clock())
        except OutboxError as exc:
            log.warning("the provider rotated the refresh token but it could not be saved",
                        relay=relay.name, error=exc.one_line())
            return None
        log.info("rotated refresh token saved", relay=relay.name, saved=saved)
        return sealed if saved else None

    async def mark_needs_attention(self, relay: RelaySettings, version: int,
                                   outcome: Outcome) -> int:
        """The relay's login failed with the credentials of `version`, or could not be
        tried (core.attention): hold all its waiting mail with an alert event. Returns
        how many messages were held."""
        key = attention_guidance(relay, outcome)
        reply = outcome.reply
        reason = str(reply) if reply is not None else outcome.detail
        now = self._clock()
        event = Event(now, EventType.ALERT, reply_code=reply.code if reply else None,
                      enhanced_code=reply.enhanced if reply else None,
                      reply=reply.text if reply else None, guidance=key,
                      detail=_attention_detail(relay.name, outcome.detail, reason, key))
        reason_held = f"relay {relay.name} needs attention: {catalogue.describe(key).title}"
        # One transaction: new credentials stored meanwhile (`set_credentials`) are
        # either seen here (nothing held) or stored after, releasing what was held.
        done = await self.store.relay_auth.hold_for_relay(relay.name, version, reason, key, now,
                                                          reason_held, event)
        if done is None:
            return 0  # new credentials arrived meanwhile: they get their own chance
        changed, held = done
        if changed:
            log.warning("relay needs attention; its mail is held", relay=relay.name,
                        reason=reason, guidance=key, held=held,
                        fix=catalogue.describe(key).next_step)
        return held

    async def mark_ok(self, name: str, version: int) -> int:
        """The relay's login works again: release its held mail."""
        released = await self.store.relay_auth.mark_ok(name, version, self._clock())
        if released is None:
            return 0
        log.info("relay login works again; its held mail is released", relay=name,
                 released=released)
        return released


def _attention_detail(relay: str, detail: str, reason: str, key: str) -> str:
    """The alert event on the relay's held mail. A mark made without a login (none
    configured, none sent in clear, no usable method, no OAuth2 token: core.attention)
    says so, with its guidance's next step: new credentials may not be the fix."""
    if not login_tried(key):
        step = catalogue.describe(key).next_step.replace("NAME", relay)
        return (f"relay {relay} needs attention: {attention_cause(reason, key)}, so all its "
                f"mail is held (no attempt counted). Next step: {step}")
    text = (f"relay {relay} needs attention: its login failed, so all its mail is held (no "
            f"attempt counted) until `outbox relay set-credentials {relay}` or "
            f"PUT /v1/relays/{relay}/credentials")
    return f"{text}; {detail}" if detail else text
