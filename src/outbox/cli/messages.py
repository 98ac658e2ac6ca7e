"""`outbox send`, `outbox status` and `outbox queue ls|retry|resend|cancel`: queue a
message and follow it. `--json` prints the API's bodies (`outbox.views`)."""

from __future__ import annotations

import base64
import json
import mimetypes
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from outbox.cli.common import ConfigOption, err, missing_option, out, with_outbox
from outbox.core.model import MessageStatus
from outbox.errors import InputError

if TYPE_CHECKING:
    from outbox.core.compose import AttachmentIn, Submission
    from outbox.service import Outbox
    from outbox.service.relays import RelayStatus
    from outbox.store.values import Message, Page

queue_app = typer.Typer(no_args_is_help=True, help="Inspect and act on the queue.")


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.command("status")(status)
    app.add_typer(queue_app, name="queue")


def send(
    ctx: typer.Context,
    sender: Annotated[str | None, typer.Option("--from", help="From address (not with "
                                               "--eml: its From header)")] = None,
    to: Annotated[list[str] | None, typer.Option("--to", help="recipient(s); repeat or "
                                                 "separate with commas; with --eml, the "
                                                 "envelope recipients (default: its To, Cc "
                                                 "and Bcc headers)")] = None,
    eml: Annotated[Path | None, typer.Option("--eml", help="a whole message (an .eml file, "
                                             "RFC 5322), or - for standard input, as "
                                             "sendmail reads one: read as SMTP submission "
                                             "reads it, its From header the sender")] = None,
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
    from outbox.views.render import accepted_view

    if eml is not None:
        given = [name for name, value in (("--from", sender), ("--subject", subject),
                                          ("--text", text), ("--html", html), ("--cc", cc),
                                          ("--bcc", bcc), ("--attach", attach)) if value]
        if given:
            raise InputError(f"{', '.join(given)} cannot go with --eml: the message's own "
                             "headers and body are sent", field="eml")
        submission = _read_eml(eml, to or [], relay)
    else:
        if sender is None or not to:  # as if required: they are, but for --eml
            missing_option(ctx, "--from" if sender is None else "--to")
        submission = _composed(sender, to, subject, text, html, cc, bcc, attach, relay)

    async def action(outbox: Outbox) -> None:
        accepted = await outbox.messages.submit(submission, owner="cli",
                                                idempotency_key=idempotency_key)
        if as_json:
            print(json.dumps(accepted_view(accepted.message).model_dump()))
        else:
            print(accepted.message.id)

    with_outbox(config, action, migrate=True)


def _composed(sender: str, to: list[str], subject: str, text: str | None,
              html: str | None, cc: list[str] | None, bcc: list[str] | None,
              attach: list[Path] | None, relay: str | None) -> Submission:
    from outbox.core.compose import Submission

    if text is None and html is None:
        raise InputError("give a body with --text or --html", field="text")
    return Submission(sender=sender, to=to, cc=cc or [], bcc=bcc or [], subject=subject,
                      text=text, html=html, relay=relay,
                      attachments=tuple(_read_attachment(p) for p in attach or []))


def _read_eml(path: Path, to: list[str], relay: str | None) -> Submission:
    """The message as `POST /v1/messages/raw` reads one (core.inbound): `to` the envelope,
    else its headers' recipients; a file saved with LF line ends is sent with CRLF."""
    import sys
    from dataclasses import replace

    from outbox.core.inbound import Envelope, read_message, with_crlf

    if str(path) == "-":
        raw = sys.stdin.buffer.read()
    elif path.is_file():
        raw = path.read_bytes()
    else:
        raise InputError(f"'{path}' is not a readable file", field="eml")
    if not raw.strip():
        raise InputError(f"'{path}' holds no message", field="eml")
    return replace(read_message(with_crlf(raw), Envelope("", tuple(to))), relay=relay,
                   metadata={}, envelope_field="to")


def _read_attachment(path: Path) -> AttachmentIn:
    from outbox.core.compose import AttachmentIn

    if not path.is_file():
        raise InputError(f"'{path}' is not a readable file", field="attach")
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return AttachmentIn(path.name, base64.b64encode(path.read_bytes()).decode(), content_type)


def status(id: Annotated[str, typer.Argument(help="message id")],
           as_json: Annotated[bool, typer.Option("--json")] = False,
           config: ConfigOption = None) -> None:
    """A message's status, recipients and timeline, with guidance."""
    from outbox.views.render import detail_view

    body = detail_view(with_outbox(config, lambda outbox: outbox.messages.get(id), migrate=False))
    if as_json:
        print(body.model_dump_json(indent=2))
        return
    from outbox.cli.tables import print_detail

    print_detail(out, body)


@queue_app.command("ls")
def queue_ls(
    status: Annotated[MessageStatus | None, typer.Option("--status", help="only this status")]
    = None,
    recipient: Annotated[str | None, typer.Option("--recipient", help="only mail to this "
                                                  "address (any case)")] = None,
    relay: Annotated[str | None, typer.Option("--relay", help="only mail with a recipient "
                                              "on this relay (a configured one, or one "
                                              "that messages name)")] = None,
    since: Annotated[str | None, typer.Option("--since", help="accepted at or after this "
                                              "time (ISO 8601; UTC without an offset)")] = None,
    until: Annotated[str | None, typer.Option("--until", help="accepted before this time")]
    = None,
    search: Annotated[str | None, typer.Option("--search", "-q", help="subject contains "
                                               "this text (any case)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOption = None,
) -> None:
    """List messages, newest first, with full ids."""
    from outbox.cli.tables import print_messages
    from outbox.service import MessageFilter
    from outbox.views.render import message_view

    where = MessageFilter(recipient=recipient, relay=relay, since=_time(since, "since"),
                          until=_time(until, "until"), subject=search or None)

    async def listing(outbox: Outbox) -> Page:
        page = await outbox.messages.list(status, limit, None, where)
        if relay is not None and not page.messages:
            await _refuse_unknown_relay(outbox, relay)
        return page

    page = with_outbox(config, listing, migrate=False)
    views = [message_view(m) for m in page.messages]
    if as_json:
        print(json.dumps([v.model_dump() for v in views], indent=2))
        return
    print_messages(out, views)


async def _refuse_unknown_relay(outbox: Outbox, relay: str) -> None:
    """A typo in --relay says so rather than "no messages". A relay removed from the
    config since its mail went is still a name to filter by while messages carry it."""
    from outbox.service import MessageFilter

    names = [r.name for r in outbox.settings.relays]
    if relay in names:
        return
    if (await outbox.messages.list(None, 1, None, MessageFilter(relay=relay))).messages:
        return
    raise InputError(f"no relay is named '{relay}' (known: {', '.join(names) or 'none'})",
                     field="relay")


def _time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time (a date alone is its midnight); UTC when it has no offset."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--{option}: '{value}' is not an ISO 8601 time, e.g. "
                         "2026-12-01T09:30:00Z", field=option) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@queue_app.command("retry")
def queue_retry(
    id: str,
    yes: Annotated[bool, typer.Option("--yes", help="confirm retrying mail the relay "
                                      "probably has already (a try ended uncertain)")] = False,
    config: ConfigOption = None,
) -> None:
    """Try a message again now (also releases a held message); says when a relay it
    waits for is backing off, since then it goes only when that ends."""
    async def retry(outbox: Outbox) -> tuple[Message, list[RelayStatus] | None]:
        message = await outbox.messages.retry(id, confirm=yes)
        return message, await outbox.relays.held_back_or_unknown(message)

    message, held_back = with_outbox(config, retry, migrate=False)
    print(f"{message.id} {message.status.value}")
    if held_back is None:  # the database went after the retry was stored: it is done
        err.print("warning: the retry is stored, but whether a relay backing off holds it "
                  "back could not be checked (the database is unavailable right now); run "
                  "`outbox relay ls` once it is back")
        return
    for relay in held_back:
        print(f"relay {relay.name}: {relay.delivery_detail}; it goes when that ends")


@queue_app.command("resend")
def queue_resend(
    id: str,
    yes: Annotated[bool, typer.Option("--yes", help="confirm resending mail already delivered")]
    = False,
    config: ConfigOption = None,
) -> None:
    """Queue a new copy (new Message-ID) linked to this message; prints the new id."""
    resent = with_outbox(config, lambda outbox: outbox.messages.resend(id, confirm=yes),
                         migrate=False)
    print(resent.message.id)


@queue_app.command("cancel")
def queue_cancel(id: str, config: ConfigOption = None) -> None:
    """Cancel a message that has not been delivered yet."""
    message = with_outbox(config, lambda outbox: outbox.messages.cancel(id), migrate=False)
    print(f"{message.id} {message.status.value}")
