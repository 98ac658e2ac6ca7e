"""`outbox config sample|show|reference`: the configuration, generated from the schema."""

from __future__ import annotations

from typing import Annotated

import typer

from outbox.cli.common import ConfigOption

config_app = typer.Typer(no_args_is_help=True, help="Show or generate configuration.")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("sample")
def config_sample() -> None:
    """Print a commented sample outbox.toml (generated from the schema)."""
    from outbox.config.sample import sample_config

    print(sample_config(), end="")


@config_app.command("reference")
def config_reference() -> None:
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
