"""`outbox relay ...` (relay credentials and login state) and `outbox keys ...`
(API keys kept in the database), registered by `outbox.cli`.

A secret never has to go on the command line, where `ps` and shell history
would show it: it is prompted for without echo, or read from stdin with
`--password-stdin` / `--refresh-token-stdin` / `--client-secret-stdin`
(one line each, in that order).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from outbox.apikeys import ApiKeys, CreatedKey
from outbox.config import RelaySettings, load_settings
from outbox.credentials import CredentialsUpdate, RelayCredentials, RelayStatus, RelayTest
from outbox.errors import DeliveryError, InputError, NotFound
from outbox.service import Outbox
from outbox.store.base import StoredApiKey

relay_app = typer.Typer(no_args_is_help=True, help="Relay credentials and login state.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys kept in the database (hashed).")

ConfigOption = Annotated[str | None, typer.Option("--config", "-c", help="config file (TOML); "
                                                  "default: $OUTBOX_CONFIG, then ./outbox.toml")]
T = TypeVar("T")


def _run(config: str | None, action: Callable[[Outbox], Awaitable[T]]) -> T:
    from outbox.cli import _with_outbox  # `outbox.cli` imports this module to register it

    return _with_outbox(config, action)


def _credentials(outbox: Outbox) -> RelayCredentials:
    return RelayCredentials(outbox.settings, outbox.store, clock=outbox.clock)


# --- outbox relay ------------------------------------------------------------------------

@relay_app.command("set-credentials")
def set_credentials(
    name: Annotated[str, typer.Argument(help="the relay's name in [[relays]]")],
    username: Annotated[str | None, typer.Option("--username", help="account to log in as "
                                                 "(default: the current one)")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                 help="read the password from stdin")] = False,
    refresh_token_stdin: Annotated[bool, typer.Option(
        "--refresh-token-stdin", help="read the OAuth2 refresh token from stdin")] = False,
    client_secret_stdin: Annotated[bool, typer.Option(
        "--client-secret-stdin", help="read the OAuth2 client secret from stdin")] = False,
    client_id: Annotated[str | None, typer.Option("--client-id", help="OAuth2 client id")]
    = None,
    token_url: Annotated[str | None, typer.Option("--token-url", help="OAuth2 token "
                                                  "endpoint")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="OAuth2 scope")] = None,
    config: ConfigOption = None,
) -> None:
    """Store new credentials (encrypted) and release the relay's held mail; the secret is
    prompted for without echo unless a --...-stdin option is given."""
    relay = _configured_relay(config, name)
    oauth2 = bool(refresh_token_stdin or client_secret_stdin or client_id or token_url
                  or scope or (relay.oauth2 is not None and not password_stdin))
    update = CredentialsUpdate(username=username, client_id=client_id, token_url=token_url,
                               scope=scope, **_read_secrets(name, oauth2, password_stdin,
                                                            refresh_token_stdin,
                                                            client_secret_stdin))

    async def action(outbox: Outbox) -> tuple[RelayStatus, int]:
        return await _credentials(outbox).set_credentials(name, update)

    status, released = _run(config, action)
    print(f"relay {name}: credentials stored (encrypted, {status.auth} as {status.username}); "
          f"state {status.state}; {released} held message(s) released")


def _configured_relay(config: str | None, name: str) -> RelaySettings:
    settings = load_settings(config)
    try:
        return settings.relay(name)
    except KeyError:
        known = ", ".join(r.name for r in settings.relays) or "none"
        raise NotFound(f"no relay named '{name}' (known: {known})") from None


def _read_secrets(name: str, oauth2: bool, password_stdin: bool, refresh_token_stdin: bool,
                  client_secret_stdin: bool) -> dict[str, str]:
    if password_stdin and (refresh_token_stdin or client_secret_stdin):
        raise InputError("give either --password-stdin or the OAuth2 options, not both",
                         field="password-stdin")
    secrets: dict[str, str] = {}
    if password_stdin:
        secrets["password"] = _stdin_line("password")
    if refresh_token_stdin:
        secrets["refresh_token"] = _stdin_line("refresh token")
    if client_secret_stdin:
        secrets["client_secret"] = _stdin_line("client secret")
    if not secrets:
        what = "OAuth2 refresh token" if oauth2 else "password"
        secrets["refresh_token" if oauth2 else "password"] = typer.prompt(
            f"{what} for relay {name}", hide_input=True).strip()
    return secrets


def _stdin_line(what: str) -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise InputError(f"no {what} on stdin (one line expected)", field=what)
    return line


@relay_app.command("test")
def test_relay(
    name: Annotated[str, typer.Argument(help="the relay's name in [[relays]]")],
    transcript: Annotated[bool, typer.Option("--transcript", help="print the SMTP "
                                             "conversation (AUTH redacted)")] = False,
    config: ConfigOption = None,
) -> None:
    """Log in without sending anything; a relay that works again gets its mail released."""

    async def action(outbox: Outbox) -> RelayTest:
        return await _credentials(outbox).test(name)

    tested = _run(config, action)
    if transcript:
        print(tested.result.transcript)
    _report_test(tested)


def _report_test(tested: RelayTest) -> None:
    relay, result = tested.relay, tested.result
    where = f"{relay.host}:{relay.port}"
    if result.failure is not None:
        what = str(result.failure.reply or result.failure.condition or "failed")
        g = tested.guidance
        raise DeliveryError(f"relay {relay.name}: {where} failed at {result.failure.stage.value}: "
                            f"{what}", hint=g.next_step if g else None)
    login = (f"logged in as {relay.username} with {result.info.auth_mechanism}"
             if result.info.auth_mechanism else "no login configured")
    tls = f", {result.info.tls_version}" if result.info.tls_version else ""
    print(f"relay {relay.name}: {where} ok ({login}{tls}); no mail sent")
    if tested.released:
        print(f"relay {relay.name} works again: {tested.released} held message(s) released")


@relay_app.command("ls")
def list_relays(config: ConfigOption = None) -> None:
    """Every relay with its login kind, where its credentials come from, and its state."""

    async def action(outbox: Outbox) -> list[RelayStatus]:
        return await _credentials(outbox).statuses()

    for s in _run(config, action):
        reason = f"  {s.reason}" if s.reason else ""
        print(f"{s.name}  {s.host}:{s.port}  {s.auth}  {s.username or '-'}  {s.source}  "
              f"{s.state}{reason}")


# --- outbox keys -------------------------------------------------------------------------

@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option("--name", help="who uses the key")],
    scopes: Annotated[list[str], typer.Option("--scopes", help="send, read, admin; "
                                              "comma-separated or repeated")],
    config: ConfigOption = None,
) -> None:
    """Make an API key and print it; it is shown only this once."""

    async def action(outbox: Outbox) -> CreatedKey:
        return await ApiKeys(outbox.settings, outbox.store, clock=outbox.clock).create(
            name, scopes)

    created = _run(config, action)
    print(f"API key '{created.record.name}' created with scopes "
          f"{', '.join(created.record.scopes)}; it is shown only now:", file=sys.stderr)
    print(created.key)


@keys_app.command("list")
def list_keys(config: ConfigOption = None) -> None:
    """Keys made with `keys create` (names and scopes; never the keys)."""

    async def action(outbox: Outbox) -> tuple[StoredApiKey, ...]:
        return await ApiKeys(outbox.settings, outbox.store).list()

    for key in _run(config, action):
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        print(f"{key.name}  {','.join(key.scopes)}  created {key.created_at.isoformat()}  "
              f"{state}")


@keys_app.command("revoke")
def revoke_key(name: Annotated[str, typer.Argument(help="the key's name")],
               config: ConfigOption = None) -> None:
    """Revoke a key: requests with it are refused from now on."""

    async def action(outbox: Outbox) -> None:
        await ApiKeys(outbox.settings, outbox.store, clock=outbox.clock).revoke(name)

    _run(config, action)
    print(f"API key '{name}' revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(relay_app, name="relay")
    app.add_typer(keys_app, name="keys")
