"""`outbox users create|list|disable|enable|set-password` (and `outbox ui-user add`): the
web UI's sign-ins, kept in the database with argon2 password hashes."""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from outbox.cli.common import ConfigOption, with_outbox
from outbox.errors import InputError

if TYPE_CHECKING:
    from outbox.service import Outbox
    from outbox.store.base import UiUser

users_app = typer.Typer(no_args_is_help=True, help="Web UI users (argon2 password hashes).")
ui_user_app = typer.Typer(no_args_is_help=True, help="Web UI users (same as `outbox users`).")
RoleOption = Annotated[str, typer.Option("--role", help="admin (everything), sender (compose, "
                                         "messages, address book) or viewer (read only)")]
StdinOption = Annotated[bool, typer.Option("--password-stdin",
                                           help="read the password from stdin (one line)")]


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(ui_user_app, name="ui-user")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise InputError("the two passwords differ", field="password")
    if not password:
        raise InputError("no password given", field="password")
    return password


def _create(name: str, role: str, password_stdin: bool, config: str | None) -> None:
    password = _password(password_stdin)

    async def action(outbox: Outbox) -> UiUser:
        return await outbox.users.create(name, role, password)

    user = with_outbox(config, action, migrate=True)
    print(f"UI user '{user.name}' created with role {user.role}")


@users_app.command("create")
def create_user(name: Annotated[str, typer.Option("--name", help="the sign-in name")],
                role: RoleOption, password_stdin: StdinOption = False,
                config: ConfigOption = None) -> None:
    """Add a web UI user; the password is prompted for unless --password-stdin."""
    _create(name, role, password_stdin, config)


@ui_user_app.command("add")
def add_user(name: Annotated[str, typer.Argument(help="the sign-in name")],
             role: RoleOption, password_stdin: StdinOption = False,
             config: ConfigOption = None) -> None:
    """Add a web UI user (as `outbox users create --name NAME`)."""
    _create(name, role, password_stdin, config)


@users_app.command("list")
def list_users(config: ConfigOption = None) -> None:
    """Every UI user with its role and state (never a hash)."""

    async def action(outbox: Outbox) -> tuple[UiUser, ...]:
        return await outbox.users.list()

    for user in with_outbox(config, action, migrate=True):
        state = f"disabled {user.disabled_at.isoformat()}" if user.disabled_at else "active"
        print(f"{user.name}  {user.role}  created {user.created_at.isoformat()}  {state}")


@users_app.command("set-password")
def set_password(name: Annotated[str, typer.Argument(help="the sign-in name")],
                 password_stdin: StdinOption = False, config: ConfigOption = None) -> None:
    """Give a UI user a new password."""
    password = _password(password_stdin)

    async def action(outbox: Outbox) -> None:
        await outbox.users.set_password(name, password)

    with_outbox(config, action, migrate=True)
    print(f"password of UI user '{name}' changed")


@users_app.command("disable")
def disable_user(name: Annotated[str, typer.Argument(help="the sign-in name")],
                 config: ConfigOption = None) -> None:
    """Refuse this user's sign-ins and end its sessions."""
    _set_disabled(name, True, config)


@users_app.command("enable")
def enable_user(name: Annotated[str, typer.Argument(help="the sign-in name")],
                config: ConfigOption = None) -> None:
    """Let a disabled user sign in again."""
    _set_disabled(name, False, config)


def _set_disabled(name: str, disabled: bool, config: str | None) -> None:
    async def action(outbox: Outbox) -> None:
        await outbox.users.set_disabled(name, disabled)

    with_outbox(config, action, migrate=True)
    print(f"UI user '{name}' {'disabled' if disabled else 'enabled'}")
