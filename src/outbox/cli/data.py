"""The data commands: `outbox backup`, `outbox restore`, `outbox export`, `outbox import`
and `outbox check`. The work is in `outbox.service.archive` (and its neighbours),
loaded only when a command runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from outbox.cli.common import ConfigOption, err, load, out, refuse_unwritable_file, with_outbox
from outbox.cli.existing import refuse_missing_database
from outbox.errors import InputError

if TYPE_CHECKING:
    from datetime import datetime

    from rich.progress import Progress

    from outbox.core.model import MessageStatus


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)
    app.command("export")(export)
    app.command("import")(import_)
    app.command("check")(check)


class Bar:
    """A rich progress bar on stderr, one task per phase."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: object | None = None
        self._bytes = False

    def begin(self, what: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.update(self._task, visible=False)  # type: ignore[arg-type]
        self._task = self._progress.add_task(what, total=total)

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)  # type: ignore[arg-type]


def _progress() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True)


def backup(
    output: Annotated[Path, typer.Option("--output", "-o", help="the backup file to write "
                                         "(a tar archive)")],
    config: ConfigOption = None,
) -> None:
    """Write a consistent backup of the queue, its history and attachments while Outbox
    runs: every table (portable rows) and every attachment, with a manifest of sizes
    and sha256 sums."""
    from outbox.service.archive import backup as run_backup

    refuse_unwritable_file(output, "outbox-backup.tar")
    settings = load(config)
    refuse_missing_database(settings)
    with _progress() as progress:
        import asyncio  # here: `outbox --help` stays light

        result = asyncio.run(run_backup(settings, output, Bar(progress)))
    manifest = result.manifest
    out.print(f"wrote {output} ({output.stat().st_size:,} bytes): {manifest.backend} "
              f"schema {manifest.revision}, {manifest.tables.get('messages', 0):,} messages, "
              f"{len(manifest.blob_parts):,} attachments", markup=False)
    for sha256 in result.missing_blobs:
        err.print(f"warning: attachment {sha256} was missing from the blob store; it is not "
                  "in the backup (run `outbox check`)", markup=False)


def restore(
    file: Annotated[Path, typer.Argument(help="the backup file (from `outbox backup`)")],
    force: Annotated[bool, typer.Option("--force", help="replace a database that already "
                                        "holds mail, contacts, API keys, UI users, "
                                        "suppressions or stored credentials")] = False,
    config: ConfigOption = None,
) -> None:
    """Restore a backup into the configured database (refused while `outbox serve`,
    `outbox worker` or `outbox submission` use it, even with --force: stop them
    first). The whole file is checked before anything is touched; an older schema is
    migrated forward; mail that was being sent comes back queued, marked uncertain."""
    from outbox.service.archive import restore as run_restore

    settings = load(config)
    with _progress() as progress:
        import asyncio

        result = asyncio.run(run_restore(settings, file, Bar(progress), force=force))
    counts = result.counts
    out.print(f"restored {file}: {counts.get('messages', 0):,} messages, "
              f"{counts.get('events', 0):,} events, {result.blobs:,} attachments "
              f"(schema {result.manifest.revision}, made by Outbox "
              f"{result.manifest.outbox_version} on {result.manifest.backend})", markup=False)
    if result.requeued:
        out.print(f"{len(result.requeued):,} messages were being sent at backup time: queued "
                  "again with an `uncertain` event (the relay may have them already)",
                  markup=False)


def export(
    status: Annotated[str, typer.Option("--status", help="messages in this status: queued, "
                                        "sending, deferred, sent, partially_sent, failed, "
                                        "held, cancelled")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the directory to write "
                                         "(created if missing)")],
    since: Annotated[str | None, typer.Option("--since", help="only messages accepted at or "
                                              "after this time (ISO 8601; UTC if no offset)")]
    = None,
    config: ConfigOption = None,
) -> None:
    """Write each message as <id>.eml (as it goes on the wire) and <id>.json (status,
    recipients with their results, events, metadata)."""
    from outbox.service.transfer import export_messages
    from outbox.views.render import detail_view

    chosen, after = _status(status), _since(since)
    _refuse_unusable_directory(output)
    count = with_outbox(config, lambda outbox: export_messages(
        outbox, chosen, after, output, lambda d: detail_view(d).model_dump(mode="json")),
        migrate=False)
    out.print(f"exported {count:,} {chosen.value} messages to {output}", markup=False)


def import_(
    directory: Annotated[Path, typer.Argument(help="a directory `outbox export` wrote")],
    config: ConfigOption = None,
) -> None:
    """Queue the exported messages again: each <id>.eml with its <id>.json, submitted as
    new mail. A Message-ID already queued is skipped, so importing twice queues nothing
    new. Any other file is named as skipped, with why; a directory without an .eml file
    is an error (exit 1)."""
    from outbox.service.transfer import import_messages

    skipped = _not_imported(directory)
    if directory.is_dir() and not any(directory.glob("*.eml")):
        _print_skipped(skipped)
        raise InputError(f"no .eml file in {directory}: nothing imported", field="dir",
                         hint="name the directory `outbox export -o` wrote: it holds "
                              "<id>.eml and <id>.json pairs")
    result = with_outbox(config, lambda outbox: import_messages(outbox, directory),
                         migrate=False)
    others = f", {len(skipped):,} other file(s) skipped" if skipped else ""
    out.print(f"queued {len(result.queued):,} new, {len(result.known):,} already queued "
              f"(same Message-ID), {len(result.refused):,} refused{others}", markup=False)
    _print_skipped(skipped)
    for name, why in result.refused:
        err.print(f"refused {name}: {why}", markup=False)
    if result.refused:
        raise typer.Exit(1)


SKIPPED_SHOWN = 20  # a directory of unrelated files must not flood the terminal


def _not_imported(directory: Path) -> list[tuple[str, str]]:
    """(name, why) of each entry of `directory` that `outbox import` does not read."""
    if not directory.is_dir():
        return []  # import_messages says so
    skipped: list[tuple[str, str]] = []
    for path in sorted(directory.iterdir()):
        if path.suffix == ".eml" or (path.suffix == ".json"
                                     and path.with_suffix(".eml").is_file()):
            continue
        if path.is_dir():
            why = "a directory (outbox import does not look inside)"
        elif path.suffix == ".json":
            why = f"no {path.stem}.eml beside it (a .json only describes its .eml)"
        else:
            why = "not an .eml file"
        skipped.append((path.name, why))
    return skipped


def _print_skipped(skipped: list[tuple[str, str]]) -> None:
    for name, why in skipped[:SKIPPED_SHOWN]:
        err.print(f"skipped {name}: {why}", markup=False)
    if len(skipped) > SKIPPED_SHOWN:
        err.print(f"skipped {len(skipped) - SKIPPED_SHOWN:,} more file(s) that are not "
                  ".eml files or their .json", markup=False)


def check(
    repair: Annotated[bool, typer.Option("--repair", help="apply the safe fixes and say what "
                                         "changed")] = False,
    config: ConfigOption = None,
) -> None:
    """Look for impossible states (final mail with pending recipients, claims of dead
    workers, attachment files without a record, missing or corrupt attachments, events
    out of order, schema drift) and name each with its fix; exit 1 if any remain."""
    from outbox.service.integrity import check as run_check

    report = with_outbox(config, lambda outbox: run_check(outbox, repair=repair),
                         migrate=False)
    for line in report.repaired:
        out.print(f"repaired: {line}", markup=False)
    for fault in report.faults:
        out.print(fault.line(), markup=False)
    if report.faults:
        # After --repair the faults are judged again: one still repairable is new.
        fixable = sum(fault.repairable for fault in report.faults)
        more = (f"; {fixable} can be repaired with --repair" if fixable
                else "; fix each by hand as its line says")
        found = "remain" if repair else "found"
        out.print(f"{len(report.faults)} problem(s) {found}{more}", markup=False)
        raise typer.Exit(1)
    out.print("no problems found", markup=False)


def _refuse_unusable_directory(output: Path) -> None:
    """`export -o` names a directory: an existing one, or one it may create."""
    existing = next((path for path in (output, *output.parents) if path.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InputError(f"{existing} is a file, not a directory", field="output",
                         hint="name a directory for the .eml and .json files; a missing one "
                              "is created")


def _status(value: str) -> MessageStatus:
    from outbox.core.model import MessageStatus

    try:
        return MessageStatus(value)
    except ValueError:
        known = ", ".join(status.value for status in MessageStatus)
        raise InputError(f"--status: unknown status {value!r} (one of {known})",
                         field="status") from None


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--since: {value!r} is not an ISO 8601 time (e.g. 2026-12-01 or "
                         "2026-12-01T08:00:00+01:00)", field="since") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
