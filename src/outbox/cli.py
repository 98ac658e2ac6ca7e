"""The `outbox` command line: a thin layer over `service.Outbox`.

Every command takes --config; user mistakes end with one line on stderr and a
non-zero exit, never a traceback (set OUTBOX_DEBUG=1 to see one).
"""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from outbox import cli_contacts, cli_ops, cli_relay
from outbox.config import Settings, load_settings
from outbox.core.compose import AttachmentIn, Submission
from outbox.core.model import MessageStatus
from outbox.errors import InputError, OutboxError
from outbox.observability import configure_logging
from outbox.service import Outbox

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Outbox: outbound email that gets delivered and explains every failure.")
queue_app = typer.Typer(no_args_is_help=True, help="Inspect and act on the queue.")
app.add_typer(queue_app, name="queue")
config_app = typer.Typer(no_args_is_help=True, help="Show or generate configuration.")
app.add_typer(config_app, name="config")
cli_ops.register(app)  # doctor, smtp-test, support-bundle
cli_relay.register(app)  # relay set-credentials/test/ls, keys create/list/revoke
cli_contacts.register(app)  # contacts import/dedupe/sync-ldap/list/..., route explain

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

ConfigOption = Annotated[str | None, typer.Option("--config", "-c", help="config file (TOML); "
                                                  "default: $OUTBOX_CONFIG, then ./outbox.toml")]
T = TypeVar("T")


def _settings(config: str | None) -> Settings:
    settings = load_settings(config)
    configure_logging(settings.logging)
    return settings


def _with_outbox(config: str | None, action: Callable[[Outbox], Awaitable[T]],
                 migrate: bool = True) -> T:
    settings = _settings(config)

    async def run() -> T:
        outbox = await Outbox.open(settings, migrate=migrate)
        try:
            return await action(outbox)
        finally:
            await outbox.close()

    return asyncio.run(run())


@app.command()
def serve(config: ConfigOption = None) -> None:
    """HTTP API, metrics and delivery workers in one process."""
    from outbox.runtime import run_serve_process

    asyncio.run(run_serve_process(_settings(config)))


@app.command()
def worker(config: ConfigOption = None) -> None:
    """Delivery workers only, for extra nodes sharing the database."""
    from outbox.runtime import run_worker_process

    asyncio.run(run_worker_process(_settings(config)))


@app.command()
def send(
    sender: Annotated[str, typer.Option("--from", help="From address")],
    to: Annotated[list[str], typer.Option("--to", help="recipient(s); repeat or separate "
                                          "with commas")],
    subject: Annotated[str, typer.Option("--subject")] = "",
    text: Annotated[str | None, typer.Option("--text", help="plain-text body")] = None,
    html: Annotated[str | None, typer.Option("--html", help="HTML body")] = None,
    cc: Annotated[list[str] | None, typer.Option("--cc")] = None,
    bcc: Annotated[list[str] | None, typer.Option("--bcc")] = None,
    attach: Annotated[list[Path] | None, typer.Option("--attach", help="file to attach")] = None,
    relay: Annotated[str | None, typer.Option("--relay", help="force this relay")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """Queue a message and print its id."""
    if text is None and html is None:
        raise InputError("give a body with --text or --html", field="text")
    submission = Submission(sender=sender, to=to, cc=cc or [], bcc=bcc or [], subject=subject,
                            text=text, html=html, relay=relay,
                            attachments=tuple(_read_attachment(p) for p in attach or []))

    async def action(outbox: Outbox) -> None:
        accepted = await outbox.submit(submission, owner="cli", idempotency_key=idempotency_key)
        m = accepted.message
        if as_json:
            print(json.dumps({"id": m.id, "status": m.status.value, "message_id": m.message_id}))
        else:
            print(m.id)

    _with_outbox(config, action)


def _read_attachment(path: Path) -> AttachmentIn:
    if not path.is_file():
        raise InputError(f"'{path}' is not a readable file", field="attach")
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return AttachmentIn(path.name, base64.b64encode(path.read_bytes()).decode(), content_type)


@app.command()
def status(id: Annotated[str, typer.Argument(help="message id")],
           as_json: Annotated[bool, typer.Option("--json")] = False,
           config: ConfigOption = None) -> None:
    """A message's status, recipients and timeline, with guidance."""
    from outbox.api.views import detail_view

    view = _with_outbox(config, lambda outbox: _detail(outbox, id), migrate=False)
    body = detail_view(view)
    if as_json:
        print(body.model_dump_json(indent=2))
        return
    from outbox.clitables import print_detail

    print_detail(out, body)


async def _detail(outbox: Outbox, id: str) -> Any:
    return await outbox.get(id)


@queue_app.command("ls")
def queue_ls(
    status: Annotated[MessageStatus | None, typer.Option("--status", help="only this status")]
    = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOption = None,
) -> None:
    """List messages, newest first, with full ids."""
    from outbox.api.views import message_view
    from outbox.clitables import print_messages

    page = _with_outbox(config, lambda outbox: outbox.list_messages(status, limit, None),
                        migrate=False)
    views = [message_view(m) for m in page.messages]
    if as_json:
        print(json.dumps([v.model_dump() for v in views], indent=2))
        return
    print_messages(out, views)


@queue_app.command("retry")
def queue_retry(id: str, config: ConfigOption = None) -> None:
    """Try a message again now (also releases a held message)."""
    message = _with_outbox(config, lambda outbox: outbox.retry(id), migrate=False)
    print(f"{message.id} {message.status.value}")


@queue_app.command("resend")
def queue_resend(
    id: str,
    yes: Annotated[bool, typer.Option("--yes", help="confirm resending mail already delivered")]
    = False,
    config: ConfigOption = None,
) -> None:
    """Queue a new copy (new Message-ID) linked to this message; prints the new id."""
    message = _with_outbox(config, lambda outbox: outbox.resend(id, confirm=yes),
                           migrate=False)
    print(message.id)


@queue_app.command("cancel")
def queue_cancel(id: str, config: ConfigOption = None) -> None:
    """Cancel a message that has not been delivered yet."""
    message = _with_outbox(config, lambda outbox: outbox.cancel(id), migrate=False)
    print(f"{message.id} {message.status.value}")


@config_app.command("sample")
def config_sample() -> None:
    """Print a commented sample outbox.toml (generated from the schema)."""
    from outbox.sample import sample_config

    print(sample_config(), end="")


@config_app.command("show")
def config_show(
    defaults: Annotated[bool, typer.Option("--defaults", help="built-in defaults only")] = False,
    config: ConfigOption = None,
) -> None:
    """Print the effective configuration, secrets replaced by ***."""
    from outbox.sample import masked_config

    settings = Settings() if defaults else load_settings(config)
    print(masked_config(settings), end="")


def main() -> None:
    """Entry point: run the app, turning expected errors into one line."""
    import click

    try:
        code = app(standalone_mode=False)
    except OutboxError as exc:
        _fail(exc.one_line())
    except click.exceptions.Abort:
        _fail("aborted")
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:  # the last line of defence against tracebacks
        if os.environ.get("OUTBOX_DEBUG"):
            raise
        _fail(f"{type(exc).__name__}: {exc} (set OUTBOX_DEBUG=1 for details)")
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    err.print(f"error: {message}", markup=False)
    sys.exit(1)
