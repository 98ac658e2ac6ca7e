"""`outbox migrate`: bring an existing database's schema up to date without starting a
process (a container's or a unit's start-up step). Only `serve` and `worker` create a
database: a SQLite file that does not exist is refused, and nothing is created."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from outbox.cli.common import ConfigOption, out, with_outbox

if TYPE_CHECKING:
    from outbox.service import Outbox


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)


def migrate(config: ConfigOption = None) -> None:
    """Bring an existing database's schema up to date (an empty one gets Outbox's tables)
    and print where it is. It creates no database: `outbox serve` or `outbox worker` does."""
    from outbox.config.sample import mask_url_password

    async def where(outbox: Outbox) -> str:
        return mask_url_password(outbox.settings.database.url)

    out.print(f"database ready: {with_outbox(config, where, migrate=True, create_tables=True)}",
              markup=False)
