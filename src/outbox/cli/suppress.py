"""`outbox suppress ls|add|rm`: the suppression list (addresses Outbox refuses to send
to). `--json` prints the API's bodies (`outbox.views.suppressions`)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from outbox.cli.common import ConfigOption, with_outbox

if TYPE_CHECKING:
    from outbox.core.suppression import Suppression
    from outbox.service import Outbox

suppress_app = typer.Typer(no_args_is_help=True, help="The suppression list: addresses that "
                           "hard-bounced, complained or unsubscribed, and your own entries")
JsonOption = Annotated[bool, typer.Option("--json", help="print the API's JSON")]


def register(app: typer.Typer) -> None:
    app.add_typer(suppress_app, name="suppress")


@suppress_app.command("ls")
def list_entries(
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many")] = 1000,
    after: Annotated[str | None, typer.Option("--after", help="start after this address")]
    = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Suppressed addresses, by address: reason, since when, the message that caused it."""
    from outbox.views.suppressions import suppression_view

    async def action(outbox: Outbox) -> tuple[Suppression, ...]:
        return await outbox.suppressions.list(limit, after)

    entries = with_outbox(config, action, migrate=False)
    if as_json:
        print(json.dumps({"suppressions": [suppression_view(e).model_dump() for e in entries]}))
        return
    for entry in entries:
        view = suppression_view(entry)
        expiry = f" until {view.expires_at}" if view.expires_at else ""
        source = f" message {view.source_message}" if view.source_message else ""
        print(f"{view.address}\t{view.reason}\t{view.created_at}{expiry}{source}\t{view.detail}")


@suppress_app.command("add")
def add(
    address: Annotated[str, typer.Argument(help="the address to stop sending to")],
    detail: Annotated[str, typer.Option("--detail", help="why (shown in the list)")] = "",
    days: Annotated[int | None, typer.Option("--days", min=1, help="expire after this many "
                                             "days; default: until removed")] = None,
    config: ConfigOption = None,
) -> None:
    """Put an address on the list: new messages to it are refused (code suppressed)."""

    async def action(outbox: Outbox) -> bool:
        _, created = await outbox.suppressions.add(
            address, detail=detail, expires_in=timedelta(days=days) if days else None)
        return created

    created = with_outbox(config, action, migrate=False)
    print(f"{address} {'suppressed' if created else 'was suppressed already; entry replaced'}")


@suppress_app.command("rm")
def remove(
    address: Annotated[str, typer.Argument(help="the address to send to again")],
    config: ConfigOption = None,
) -> None:
    """Take an address off the list."""

    async def action(outbox: Outbox) -> None:
        await outbox.suppressions.remove(address)

    with_outbox(config, action, migrate=False)
    print(f"{address} removed from the suppression list")
