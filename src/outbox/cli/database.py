"""`outbox migrate`: create or upgrade the database without starting a process (a
container's or a unit's start-up step). Besides `serve` and `worker`, it is the only
command that creates a database."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from outbox.cli.common import ConfigOption, out, with_outbox

if TYPE_CHECKING:
    from outbox.service import Outbox


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)


def migrate(config: ConfigOption = None) -> None:
    """Create the database, or bring its schema up to date, and print where it is."""
    from outbox.config.sample import mask_url_password

    async def where(outbox: Outbox) -> str:
        return mask_url_password(outbox.settings.database.url)

    out.print(f"database ready: {with_outbox(config, where, migrate=True, create=True)}",
              markup=False)
