"""The `outbox` Typer app, built from the command groups.

`build_app(*leading)` puts the given commands first; `outbox.main` passes `serve` and
`worker`, which need the runtime (and so the HTTP API) that this package must not import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from outbox import __version__
from outbox.cli import (
    config,
    contacts,
    data,
    database,
    dkim,
    keys,
    messages,
    ops,
    relays,
    suppress,
    users,
    webhooks,
)

HELP = "Outbox: outbound email that gets delivered and explains every failure."
GROUPS = (messages, ops, data, database, config, relays, keys, users, contacts, webhooks,
          suppress, dkim)


def _print_version(value: bool) -> None:
    if value:
        print(f"outbox {__version__}")
        raise typer.Exit()


def _options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="print the version and exit")] = False,
) -> None:
    """Outbox: outbound email that gets delivered and explains every failure."""


def build_app(*leading: Callable[..., None]) -> typer.Typer:
    """The app: the `leading` commands (named after their functions), then every group's."""
    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                      help=HELP, rich_markup_mode=None)
    app.callback()(_options)
    for command in leading:
        app.command()(command)
    for group in GROUPS:
        group.register(app)
    return app


app = build_app()
