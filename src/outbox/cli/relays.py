"""`outbox relay set-credentials|clear-credentials|test|ls`: relay credentials and
login state.

A secret never has to go on the command line, where `ps` and shell history would show
it: it is prompted for without echo, or read from stdin with `--password-stdin` /
`--refresh-token-stdin` / `--client-secret-stdin` (one line each, in that order).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from outbox.cli.common import ConfigOption, with_outbox
from outbox.errors import (
    CredentialsIncomplete,
    DeliveryError,
    InputError,
    LoginNotVerified,
    NotFound,
)

if TYPE_CHECKING:
    from outbox.config import RelaySettings
    from outbox.service import Outbox
    from outbox.service.relays import DueNow, Relays, RelayStatus, RelayTest

relay_app = typer.Typer(no_args_is_help=True, help="Relay credentials and login state.")


def register(app: typer.Typer) -> None:
    app.add_typer(relay_app, name="relay")


def _credentials(outbox: Outbox) -> Relays:
    return outbox.relays


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
    no_verify: Annotated[bool, typer.Option("--no-verify", help="store without logging in "
                                            "to the relay first")] = False,
    config: ConfigOption = None,
) -> None:
    """Log in to the relay with the new credentials (nothing is sent), then store them
    (encrypted; they override the config file's) and release the relay's held mail. A
    login the relay refuses stores nothing; --no-verify skips the login. The secret is
    prompted for without echo unless a --...-stdin option is given."""
    from outbox.service.relays import CredentialsUpdate

    relay = _configured_relay(config, name)
    oauth2 = bool(refresh_token_stdin or client_secret_stdin or client_id or token_url
                  or scope or (relay.oauth2 is not None and not password_stdin))
    update = CredentialsUpdate(username=username, client_id=client_id, token_url=token_url,
                               scope=scope, **_read_secrets(name, oauth2, password_stdin,
                                                            refresh_token_stdin,
                                                            client_secret_stdin))

    async def action(outbox: Outbox) -> tuple[RelayStatus, int]:
        try:
            return await _credentials(outbox).set_credentials(name, update,
                                                              verify=not no_verify)
        except LoginNotVerified as exc:
            raise LoginNotVerified(exc.message, hint=f"{exc.hint}; or store them anyway "
                                   "with --no-verify") from None
        except CredentialsIncomplete as exc:  # its hint names the HTTP API's route
            raise CredentialsIncomplete(exc.message, field=exc.field,
                                        hint=_missing_option(exc.field)) from None

    status, released = with_outbox(config, action, migrate=True)
    print(f"relay {name}: credentials stored (encrypted, {status.auth} as {status.username}); "
          f"state {status.state}; {released} held message(s) released")


# The option that gives what a CredentialsIncomplete names (its field, as the API's).
_OPTIONS = {"username": "--username", "password": "--password-stdin",
            "oauth2.token_url": "--token-url", "oauth2.client_id": "--client-id",
            "oauth2.refresh_token": "--refresh-token-stdin"}


def _missing_option(field: str | None) -> str:
    option = _OPTIONS.get(field or "")
    return (f"give it with {option}" if option
            else "give what the relay does not have yet (see --help)")


@relay_app.command("clear-credentials")
def clear_credentials(
    name: Annotated[str, typer.Argument(help="the relay's name in [[relays]]")],
    config: ConfigOption = None,
) -> None:
    """Forget the credentials stored with set-credentials, so that the config file's
    apply again (the relay's held mail is released)."""

    async def action(outbox: Outbox) -> tuple[RelayStatus, bool]:
        return await _credentials(outbox).clear_credentials(name)

    status, had = with_outbox(config, action, migrate=True)
    if had:
        print(f"relay {name}: stored credentials removed; the config file's apply again "
              f"({status.auth} as {status.username or '-'})")
    else:
        print(f"relay {name}: no stored credentials; the config file's already apply")


def _configured_relay(config: str | None, name: str) -> RelaySettings:
    from outbox.config import load_settings

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
    """Log in without sending anything. A relay that works again gets its held mail
    released; one that was backing off is open again at once, and the deferred mail
    waiting for it is due now."""

    async def action(outbox: Outbox) -> RelayTest:
        return await _credentials(outbox).test(name)

    tested = with_outbox(config, action, migrate=True)
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
    # "ok" is the connection's; not beside a refusal of mail (a stranger pass).
    verdict = "connected" if tested.refused_mail else "ok"
    print(f"relay {relay.name}: {where} {verdict} ({login}{tls}); no mail sent")
    if tested.refused_mail:
        print(f"relay {relay.name} did not ask for a login at connect (this test connects, "
              "says EHLO, STARTTLS if configured, and QUIT; it sends no MAIL), but it refused "
              f"mail without one ({tested.refused_mail}): its mail stays held. Next step: "
              f"`outbox relay set-credentials {relay.name}`, or `outbox queue retry ID` once "
              "the relay takes mail without a login.")
    if tested.released:
        print(f"relay {relay.name} works again: {tested.released} held message(s) released")
    if tested.ended is not None:
        print(f"relay {relay.name} answered: its back-off (after {tested.ended.failures} "
              f"failure(s)) is ended; {tested.ended.due_now} deferred message(s) waiting for "
              "it are due now and go at the next claim")


@relay_app.command("ls")
def list_relays(config: ConfigOption = None) -> None:
    """Every relay with its login kind and account, which credentials apply (the config
    file's, or stored ones that override them), its health from the snapshot the alerts
    and /metrics read (ok; idle: no attempt in the [alerts] window; sending: none
    finished in it, but a worker has taken its mail; failing; down: its connections
    fail; throttled; needs attention), its delivery state (open, backing
    off until T, throttled to N sessions) and, when it has any, its mail due now that no
    worker has taken yet (a slow relay's share of the workers is full, or no worker runs).
    Mail a worker has taken shows as sending, also while it waits in line for a session:
    10 s at most, after which it waits deferred until about its turn."""

    async def action(outbox: Outbox) -> list[tuple[RelayStatus, str, DueNow | None]]:
        from outbox.service.health import verdict

        relays = _credentials(outbox)
        snapshot, (due, sending) = await outbox.health.snapshot(), await relays.queue_now()
        return [(s, verdict(health, snapshot.at, sending.get(s.name, 0))
                 if health is not None else s.state, due.get(s.name))
                for s in await relays.statuses() for health in [snapshot.relay(s.name)]]

    for s, state, due in with_outbox(config, action, migrate=True):
        reason = f"  {s.reason}" if s.reason else ""
        source = "stored (overrides the config file)" if s.source == "stored" else "config file"
        print(f"{s.name}  {s.host}:{s.port}  {s.auth}  {s.username or '-'}  "
              f"credentials: {source}  {state}{reason}  delivery: {s.delivery_detail}"
              f"{_waiting(due)}")


def _waiting(due: DueNow | None) -> str:
    """Mail due now that no worker has claimed: a slow relay's share of the workers is
    full (or no worker runs), which nothing else in the line shows."""
    if due is None:
        return ""
    from outbox.core.alerting import duration

    return (f"  waiting: {due.count} message(s) due now, not being delivered yet (the "
            f"oldest for {duration(due.oldest)})")
