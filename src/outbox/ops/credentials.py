"""Which credentials `outbox doctor` and `outbox smtp-test` log in with: the ones
delivery and `outbox relay test` use. Credentials stored with `outbox relay
set-credentials` (or the API, or a refresh token the provider rotated) override the
config file's (`CredentialVault.effective`); without a database to read, or with
stored credentials this machine cannot open, the config file's apply and `source`
says why. A refresh token the provider rotates during the login is saved, as delivery
saves it: otherwise the stored one would stop working. No secret is ever in `source`.
"""

from __future__ import annotations

from dataclasses import dataclass

from outbox.config import RelaySettings, Settings
from outbox.delivery.auth import Authenticator, authenticators_for
from outbox.delivery.credentials import CredentialVault
from outbox.delivery.oauth import TokenSource
from outbox.errors import OutboxError
from outbox.store.base import Store

STORED = "stored credentials (outbox relay set-credentials)"
CONFIG = "config file"


@dataclass(frozen=True, slots=True)
class Login:
    """A relay with the credentials it logs in with, and where they come from."""

    relay: RelaySettings
    source: str  # STORED, or CONFIG (with why stored ones were not used, if there are any)
    authenticators: tuple[Authenticator, ...]


def config_login(relay: RelaySettings, why: str = "") -> Login:
    """The config file's credentials; `why` the stored ones were not looked at or used."""
    source = f"{CONFIG} ({why})" if why else CONFIG
    return Login(relay, source, tuple(authenticators_for(relay)))


async def login_for(settings: Settings, database: Store | str, relay: RelaySettings) -> Login:
    """`relay` as delivery logs in to it. `database`: the open store, or why it could
    not be opened (then the config file's credentials apply)."""
    if isinstance(database, str):
        return config_login(relay, f"stored credentials not read: {database}")
    vault = CredentialVault(settings, database)
    try:
        auth = await database.relay_auth.load_relay_credentials(relay.name)
        effective = vault.effective(relay, auth)
    except OutboxError as exc:
        return config_login(relay, f"stored credentials not usable: {exc.one_line()}")

    async def keep_rotated(token: str) -> None:
        await vault.save_rotated(effective, auth.version, token)

    tokens = (TokenSource(effective.oauth2, on_rotate=keep_rotated)
              if effective.oauth2 is not None else None)
    source = CONFIG if auth.credentials is None else STORED
    return Login(effective, source, tuple(authenticators_for(effective, tokens)))
