"""`outbox config sample|show|reference`: the configuration, generated from the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from outbox.cli.common import ConfigOption, refuse_unwritable_file
from outbox.errors import InputError

config_app = typer.Typer(no_args_is_help=True, help="Show or generate configuration.")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("sample")
def config_sample(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="write the sample to this file, a new one (an existing file "
        "is never overwritten); default: print it")] = None,
) -> None:
    """Print a commented sample outbox.toml (generated from the schema), or write it to
    a new file with --config."""
    from outbox.config.sample import sample_config

    if config is None:
        print(sample_config(), end="")
        return
    _write_new(config, sample_config())
    print(f"wrote {config}: a sample configuration; edit it, then run `outbox doctor "
          f"--config {config}`")


def _write_new(path: Path, text: str) -> None:
    refuse_unwritable_file(path, "outbox.toml")
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise InputError(f"{path} exists already; a sample never replaces a config",
                         field="config", hint="name a new file, or run `outbox config sample` "
                         "without --config to print it") from None
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}", field="config") from None


@config_app.command("reference")
def config_reference(
    config: Annotated[str | None, typer.Option(
        "--config", "-c", help="accepted as by every command; the reference is the same "
        "for every config file")] = None,
) -> None:
    """Print the configuration reference in Markdown: every key with its type, default
    and description (docs/configuration.md is this output)."""
    from outbox.config.reference import reference_markdown

    print(reference_markdown(), end="")


@config_app.command("show")
def config_show(
    defaults: Annotated[bool, typer.Option("--defaults", help="built-in defaults only")] = False,
    config: ConfigOption = None,
) -> None:
    """Print the effective configuration, secrets replaced by ***."""
    from outbox.config import Settings, load_settings
    from outbox.config.sample import masked_config

    settings = Settings() if defaults else load_settings(config)
    print(masked_config(settings), end="")
