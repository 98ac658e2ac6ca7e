"""What every command shares: the --config option, settings with logging configured,
`with_outbox` (open the service, run one action, close it) and `run`, which turns
expected errors into one line on stderr and a non-zero exit, never a traceback (set
OUTBOX_DEBUG=1 to see one).

Heavy modules (the service, hence SQLAlchemy) load only when a command runs, so
`outbox --help` stays fast.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
import typer.main
from rich.console import Console

from outbox.errors import InputError, OutboxError

if TYPE_CHECKING:
    from outbox.config import Settings
    from outbox.service import Outbox

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

ConfigOption = Annotated[str | None, typer.Option("--config", "-c", help="config file (TOML); "
                                                  "default: $OUTBOX_CONFIG, then ./outbox.toml")]
T = TypeVar("T")


def load(config: str | None) -> Settings:
    """The settings from --config (or the defaults' search), with logging configured."""
    from outbox.config import load_settings

    settings = load_settings(config)
    configure_logging(settings)
    return settings


def configure_logging(settings: Settings) -> None:
    """Logging as configured, with the copy the support bundle reads (structlog loads
    here, not at start-up)."""
    from outbox.config import log_history_path
    from outbox.observability import configure_logging as configure

    configure(settings.logging, history=log_history_path(settings))


def with_outbox(config: str | None, action: Callable[[Outbox], Awaitable[T]], *,
                migrate: bool, create_tables: bool = False) -> T:
    """Open the service, run `action`, close. A database that does not exist is refused
    in one line, before anything is written (only `serve` and `worker` create one); so
    is one without Outbox's tables, unless `create_tables` (`outbox migrate`). `migrate`
    upgrades an older Outbox schema to this version's (it is an Outbox database
    already: serve would upgrade it too)."""
    import asyncio

    from outbox.cli.existing import open_outbox, refuse_missing_database

    settings = load(config)
    refuse_missing_database(settings, create_tables=create_tables)

    async def run() -> T:
        outbox = await open_outbox(settings, migrate=migrate, create_tables=create_tables)
        try:
            return await action(outbox)
        finally:
            await outbox.close()

    return asyncio.run(run())


def refuse_unwritable_file(output: Path, example: str) -> None:
    """Before any work: `-o FILE` must name a file in an existing directory."""
    if output.is_dir():
        raise InputError(f"{output} is a directory", field="output",
                         hint=f"name the file to write, e.g. {output / example}")
    if not output.parent.is_dir():
        raise InputError(f"the directory {output.parent} does not exist", field="output")


@functools.cache
def click_command(app: typer.Typer) -> Any:
    """`app` as the click command Typer runs, built once per process: building it reads
    every command's signature, about 0.1 s of CPU. A process that forks `outbox`
    commands (the test suite's zygote) builds it once, before it forks."""
    return typer.main.get_command(app)


def run(app: typer.Typer) -> NoReturn:
    """Run the app, turning expected errors into one line."""
    usage_errors, aborts = _click_exceptions()
    try:
        code = click_command(app)(standalone_mode=False)
    except OutboxError as exc:
        fail(exc.one_line())
    except aborts:
        fail("aborted")
    except usage_errors as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `outbox relay`: the group's help
            err.print(exc.format_message(), markup=False, highlight=False)
            sys.exit(exc.exit_code)
        fail(usage_line(exc), code=exc.exit_code)
    except Exception as exc:  # the last line of defence against tracebacks
        if os.environ.get("OUTBOX_DEBUG"):
            raise
        fail(f"{type(exc).__name__}: {exc} (set OUTBOX_DEBUG=1 for details)")
    sys.exit(code if isinstance(code, int) else 0)


def _click_exceptions() -> tuple[tuple[type[Any], ...], tuple[type[Any], ...]]:
    """(usage errors, aborts) of click and of the copy of click that newer Typer carries."""
    usage: list[type[Any]] = []
    aborts: list[type[Any]] = [typer.Abort]
    try:
        import click
    except ImportError:
        pass
    else:
        usage.append(click.ClickException)
        aborts.append(click.exceptions.Abort)
    try:
        from typer._click import exceptions as vendored
    except ImportError:
        pass
    else:
        usage.append(vendored.ClickException)
    return tuple(usage), tuple(aborts)


def usage_line(exc: Any) -> str:
    """A usage mistake in plain words, with where to read the command's usage."""
    message = str(exc.format_message()).rstrip(".").replace("Value error, ", "")
    message = message[:1].lower() + message[1:]
    names: list[str] = []
    context = getattr(exc, "ctx", None)
    while context is not None and context.parent is not None:  # the root is `outbox`
        names.insert(0, context.info_name)
        context = context.parent
    return f"{message} (see `{' '.join(['outbox', *names])} --help`)"


def missing_option(ctx: typer.Context, name: str) -> NoReturn:
    """`name` left out where the command needs it (an option required unless another
    is given): the usage mistake click reports for a required option, exit 2."""
    exceptions = sys.modules[typer.BadParameter.__module__]  # click, or Typer's copy
    raise exceptions.MissingParameter(ctx=ctx, param_hint=f"'{name}'", param_type="option")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    sys.exit(code)
