"""The operator commands: `outbox doctor`, `outbox smtp-test` and
`outbox support-bundle`. `cli.py` registers them with `register(app)`; the
work is in `outbox.ops`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from outbox.clock import utcnow
from outbox.config import Settings, load_settings
from outbox.errors import InputError
from outbox.observability import configure_logging

if TYPE_CHECKING:
    from outbox.ops.checks import Report

# The ops modules (SMTP, the store) load only when their command runs.
out = Console(soft_wrap=True, highlight=False)

ConfigOption = Annotated[str | None, typer.Option("--config", "-c", help="config file (TOML); "
                                                  "default: $OUTBOX_CONFIG, then ./outbox.toml")]
_STYLES = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
    app.command("smtp-test")(smtp_test)
    app.command("support-bundle")(support_bundle)


def _settings(config: str | None) -> Settings:
    settings = load_settings(config)
    configure_logging(settings.logging)
    return settings


def doctor(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")]
           = False, config: ConfigOption = None) -> None:
    """Check the database, disk, every relay (DNS, connect, TLS, AUTH, SIZE), the clock and
    the queue; exit 1 if any check fails."""
    from outbox.ops.doctor import run_doctor

    report = asyncio.run(run_doctor(_settings(config)))
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(out, report)
    raise typer.Exit(report.exit_code)


def print_report(console: Console, report: Report) -> None:
    from rich.markup import escape
    from rich.table import Table

    from outbox.ops.checks import Status

    table = Table(show_edge=False, pad_edge=False)
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        style = _STYLES[check.status.value]
        table.add_row(f"[{style}]{check.status.value.upper()}[/]", escape(check.name),
                      escape(check.detail))
    console.print(table)
    for check in report.checks:
        if check.fix and check.status in (Status.FAIL, Status.WARN):
            console.print(f"{check.status.value.upper()} {check.name}: {check.fix}",
                          markup=False)
    counts = report.counts()
    summary = ", ".join(f"{counts[s.value]} {s.value}" for s in Status if counts[s.value])
    console.print(("OK: " if report.ok else "PROBLEMS FOUND: ") + summary, markup=False)


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
    conversation live, then the result with guidance; exit 1 unless the relay accepted it."""
    from outbox.ops.smtp_test import build_test_message, default_sender, find_relay, send_test

    settings = _settings(config)
    chosen = find_relay(settings, relay)
    message = build_test_message(sender or default_sender(chosen, settings.delivery), to,
                                 chosen, utcnow(), attach or [])
    out.print(f"Sending a test message through relay {chosen.name} ({chosen.host}:"
              f"{chosen.port}, security {chosen.security}) from {message.sender} to "
              f"{message.recipient}, {len(message.data):,} bytes", markup=False)
    result = asyncio.run(send_test(chosen, settings.delivery, message,
                                   lambda line: out.print(line, markup=False)))
    out.print(result.summary, markup=False)
    raise typer.Exit(0 if result.ok else 1)


def support_bundle(
    output: Annotated[Path, typer.Option("--output", "-o", help="the zip file to write")],
    log_lines: Annotated[int, typer.Option("--log-lines", min=0, help="log lines to include")]
    = 1000,
    config: ConfigOption = None,
) -> None:
    """Write a zip for support: masked config, recent logs and messages, queue statistics,
    versions and the doctor's report. No secret goes in."""
    from outbox.ops.bundle import write_bundle

    if not output.parent.is_dir():
        raise InputError(f"the directory {output.parent} does not exist", field="output")
    settings = _settings(config)
    members = asyncio.run(write_bundle(settings, output, log_lines=log_lines))
    out.print(f"wrote {output} ({output.stat().st_size:,} bytes) with:", markup=False)
    for member in members:
        out.print(f"  {member.name:<15} {len(member.data):>9,} bytes  {member.description}",
                  markup=False)
