"""`outbox keys create|list|revoke`: API keys kept in the database (hashed)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from outbox.cli.common import ConfigOption, with_outbox

if TYPE_CHECKING:
    from outbox.service import Outbox
    from outbox.service.keys import ApiKeys, CreatedKey
    from outbox.store.base import StoredApiKey

keys_app = typer.Typer(no_args_is_help=True, help="API keys kept in the database (hashed).")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


def _keys(outbox: Outbox) -> ApiKeys:
    return outbox.keys


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option("--name", help="who uses the key")],
    scopes: Annotated[list[str], typer.Option("--scopes", help="send, read, admin; "
                                              "comma-separated or repeated")],
    requests_per_minute: Annotated[int | None, typer.Option(
        "--requests-per-minute", min=0, help="API requests a minute; 0: unlimited; default: "
        "[auth] requests_per_minute")] = None,
    messages_per_minute: Annotated[int | None, typer.Option(
        "--messages-per-minute", min=0, help="messages a minute; 0: unlimited; default: "
        "[auth] messages_per_minute")] = None,
    config: ConfigOption = None,
) -> None:
    """Make an API key and print it; it is shown only this once."""

    async def action(outbox: Outbox) -> CreatedKey:
        return await _keys(outbox).create(name, scopes, requests_per_minute=requests_per_minute,
                                          messages_per_minute=messages_per_minute)

    created = with_outbox(config, action, migrate=True)
    print(f"API key '{created.record.name}' created with scopes "
          f"{', '.join(created.record.scopes)}; it is shown only now:", file=sys.stderr)
    print(created.key)


@keys_app.command("list")
def list_keys(config: ConfigOption = None) -> None:
    """Keys made with `keys create` (names and scopes; never the keys)."""

    async def action(outbox: Outbox) -> tuple[StoredApiKey, ...]:
        return await _keys(outbox).list()

    for key in with_outbox(config, action, migrate=True):
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        print(f"{key.name}  {','.join(key.scopes)}  created {key.created_at.isoformat()}  "
              f"{state}{_limits(key)}")


def _limits(key: StoredApiKey) -> str:
    parts = [f"{value or 'unlimited'} {what}/min" for what, value in
             (("requests", key.requests_per_minute), ("messages", key.messages_per_minute))
             if value is not None]
    return f"  ({', '.join(parts)})" if parts else ""


@keys_app.command("revoke")
def revoke_key(name: Annotated[str, typer.Argument(help="the key's name")],
               config: ConfigOption = None) -> None:
    """Revoke a key: requests with it are refused from now on."""

    async def action(outbox: Outbox) -> None:
        await _keys(outbox).revoke(name)

    with_outbox(config, action, migrate=True)
    print(f"API key '{name}' revoked")
