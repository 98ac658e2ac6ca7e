"""The operator commands: `outbox doctor`, `outbox smtp-test` and `outbox support-bundle`.
The work is in `outbox.ops`, whose modules (SMTP, the store) load only when their
command runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from outbox.cli.common import ConfigOption, load, out, refuse_unwritable_file
from outbox.clock import utcnow

if TYPE_CHECKING:
    from outbox.config import RelaySettings, Settings
    from outbox.ops.smtp_test import SendResult


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
    app.command("smtp-test")(smtp_test)
    app.command("support-bundle")(support_bundle)


def doctor(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")]
           = False, config: ConfigOption = None) -> None:
    """Check the database, disk, every relay (DNS, connect, TLS, AUTH, SIZE), the clock and
    the queue; exit 1 if any check fails."""
    import asyncio

    from outbox.cli.tables import print_report
    from outbox.service.diagnostics import doctor as run_doctor

    report = asyncio.run(run_doctor(load(config)))
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(out, report)
    raise typer.Exit(report.exit_code)


def smtp_test(
    relay: Annotated[str, typer.Option("--relay", help="the relay to send through (its name)")],
    to: Annotated[str, typer.Option("--to", help="the recipient's address")],
    attach: Annotated[list[Path] | None, typer.Option("--attach", help="file to attach")]
    = None,
    sender: Annotated[str | None, typer.Option("--from", help="sender address; default: the "
                                               "relay's username if it is an address")] = None,
    config: ConfigOption = None,
) -> None:
    """Send one test message straight through a relay (not queued), printing the SMTP
    conversation live, then the result with guidance; exit 1 unless the relay accepted it.
    It logs in as delivery does: with the credentials stored by `outbox relay
    set-credentials` if there are any, else the config file's, and says which."""
    import asyncio

    from outbox.ops.smtp_test import find_relay

    settings = load(config)
    chosen = find_relay(settings, relay)
    result = asyncio.run(_smtp_test(settings, chosen, to, sender, attach or []))
    out.print(result.summary, markup=False)
    raise typer.Exit(0 if result.ok else 1)


async def _smtp_test(settings: Settings, chosen: RelaySettings, to: str, sender: str | None,
                     attach: list[Path]) -> SendResult:
    from outbox.ops.credentials import login_for
    from outbox.ops.smtp_test import build_test_message, default_sender, send_test
    from outbox.service.diagnostics import existing_database

    async with existing_database(settings) as database:
        login = await login_for(settings, database, chosen)
        message = build_test_message(sender or default_sender(login.relay, settings.delivery),
                                     to, chosen, utcnow(), attach)
        out.print(f"Sending a test message through relay {chosen.name} ({chosen.host}:"
                  f"{chosen.port}, security {chosen.security}) from {message.sender} to "
                  f"{message.recipient}, {len(message.data):,} bytes; credentials: "
                  f"{login.source}", markup=False)
        return await send_test(chosen, settings.delivery, message,
                               lambda line: out.print(line, markup=False), login)


def support_bundle(
    output: Annotated[Path, typer.Option("--output", "-o", help="the zip file to write")],
    log_lines: Annotated[int, typer.Option("--log-lines", min=0, help="log lines to include")]
    = 1000,
    config: ConfigOption = None,
) -> None:
    """Write a zip for support: masked config, recent logs and messages, queue statistics,
    versions and the doctor's report. No secret goes in."""
    import asyncio

    from outbox.service.diagnostics import support_bundle as write_bundle

    refuse_unwritable_file(output, "outbox-support.zip")
    settings = load(config)
    members = asyncio.run(write_bundle(settings, output, log_lines=log_lines))
    out.print(f"wrote {output} ({output.stat().st_size:,} bytes) with:", markup=False)
    for member in members:
        out.print(f"  {member.name:<15} {len(member.data):>9,} bytes  {member.description}",
                  markup=False)
