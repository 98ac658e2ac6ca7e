"""`outbox webhooks add|list|remove|enable|log|redeliver`: event webhook endpoints.
`--json` prints the API's bodies (`outbox.views.webhooks`)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from outbox.cli.common import ConfigOption, with_outbox

if TYPE_CHECKING:
    from outbox.service import Outbox
    from outbox.service.webhooks import CreatedEndpoint
    from outbox.store.webhook_values import WebhookDelivery, WebhookEndpoint

webhooks_app = typer.Typer(no_args_is_help=True, help="Event webhooks: endpoints that get "
                           "signed POSTs when mail is queued, sent, deferred, failed ...")
JsonOption = Annotated[bool, typer.Option("--json", help="print the API's JSON")]


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="http(s) URL the events are posted to")],
    events: Annotated[list[str], typer.Option(
        "--events", help="sent,failed,... (queued, sent, partially_sent, deferred, failed, "
        "held, released, uncertain, cancelled, bounced, complained, unsubscribed) or '*'; "
        "comma-separated or repeated")],
    secret_stdin: Annotated[bool, typer.Option(
        "--secret-stdin", help="read the signing secret from stdin; default: one is made "
        "and printed once")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="events per request; "
                                            "1: each on its own")] = 1,
    description: Annotated[str, typer.Option("--description")] = "",
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Add an endpoint and print its id and secret (shown only this once)."""
    secret = sys.stdin.readline().strip() if secret_stdin else None

    async def action(outbox: Outbox) -> CreatedEndpoint:
        return await outbox.webhooks.add(url, events, secret=secret, batch_size=batch_size,
                                         description=description)

    created = with_outbox(config, action, migrate=False)
    if as_json:
        from outbox.views.webhooks import created_view

        print(json.dumps(created_view(created.endpoint, created.secret).model_dump()))
        return
    endpoint = created.endpoint
    print(f"webhook endpoint {endpoint.id} added for {', '.join(endpoint.events)}; its secret "
          "is shown only now:", file=sys.stderr)
    print(endpoint.id)
    print(created.secret)


@webhooks_app.command("list")
def list_endpoints(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Endpoints (never their secrets), with their state."""
    from outbox.views.webhooks import EndpointList, endpoint_view

    async def action(outbox: Outbox) -> tuple[WebhookEndpoint, ...]:
        return await outbox.webhooks.list()

    found = with_outbox(config, action, migrate=False)
    if as_json:
        print(EndpointList(endpoints=[endpoint_view(e) for e in found]).model_dump_json())
        return
    for e in found:
        state = "enabled" if e.is_enabled else f"DISABLED ({e.disabled_reason})"
        failing = f", {e.failures} failures in a row" if e.failures else ""
        print(f"{e.id}  {e.url}  {','.join(e.events)}  {state}{failing}")
    if not found:
        print("no webhook endpoints")


@webhooks_app.command("remove")
def remove(id: Annotated[str, typer.Argument(help="the endpoint's id (wh_...)")],
           config: ConfigOption = None) -> None:
    """Remove an endpoint and its delivery log."""
    with_outbox(config, lambda outbox: outbox.webhooks.remove(id), migrate=False)
    print(f"webhook endpoint {id} removed")


@webhooks_app.command("enable")
def enable(id: Annotated[str, typer.Argument(help="the endpoint's id (wh_...)")],
           config: ConfigOption = None) -> None:
    """Enable an endpoint disabled after failing; its pending events resume."""
    changed = with_outbox(config, lambda outbox: outbox.webhooks.enable(id), migrate=False)
    print(f"webhook endpoint {id} " + ("enabled" if changed else "was already enabled"))


@webhooks_app.command("log")
def log(id: Annotated[str, typer.Argument(help="the endpoint's id (wh_...)")],
        limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
        as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """The endpoint's deliveries, newest first, with the receiver's last answer."""
    from outbox.views.webhooks import delivery_view, log_view

    async def action(outbox: Outbox) -> tuple[WebhookDelivery, ...]:
        return await outbox.webhooks.log(id, limit)

    found = with_outbox(config, action, migrate=False)
    if as_json:
        print(log_view(found, limit).model_dump_json())
        return
    for view in (delivery_view(d) for d in found):
        answer = f"HTTP {view.response_status}" if view.response_status else view.error or "-"
        then = f"  next {view.next_attempt_at}" if view.next_attempt_at else ""
        print(f"{view.event_id}  {view.event_type:<14} {view.message_id}  {view.status:<9} "
              f"attempts {view.attempts}  {answer}{then}")
    if not found:
        print("no deliveries yet")


@webhooks_app.command("redeliver")
def redeliver(event_id: Annotated[str, typer.Argument(help="the event's id (evt_...)")],
              endpoint: Annotated[str | None, typer.Option(
                  "--endpoint", help="only to this endpoint (also one that never had it); "
                  "default: every endpoint that had it")] = None,
              config: ConfigOption = None) -> None:
    """Send an event again, with the same event id."""
    count = with_outbox(config, lambda outbox: outbox.webhooks.redeliver(event_id, endpoint),
                        migrate=False)
    print(f"event {event_id} will be delivered again ({count} endpoint(s))")
