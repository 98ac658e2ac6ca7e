"""Rich tables for the CLI: full ids, never truncated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from outbox.ops.checks import Report
    from outbox.views.models import MessageOut

_STYLES = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


# Fixed widths of the message list's narrow columns; recipients and subject share the rest.
_FIXED = {"id": 32, "attempts": 8, "created": 16}
_TEXT_MIN = 16  # the least width recipients and subject each get before a column is dropped
_GAP = 3  # between two columns: padding, rule, padding


def message_columns(width: int, status_width: int) -> list[str]:
    """The message list's columns that fit `width`: attempts, then created, are dropped on
    a narrow terminal so that recipients and subject stay readable; id is never cut."""
    columns = ["id", "status", "attempts", "created", "recipients", "subject"]
    for optional in ("attempts", "created"):
        fixed = sum(_FIXED.get(c, status_width) for c in columns[:-2])
        if fixed + 2 * _TEXT_MIN + _GAP * (len(columns) - 1) <= width:
            break
        columns.remove(optional)
    return columns


def print_messages(console: Console, messages: Sequence[MessageOut]) -> None:
    """Messages as a table that fits the terminal (80 columns included), full ids kept."""
    if not messages:
        console.print("no messages")
        return
    status_width = max(len("status"), *(len(m.status) for m in messages))
    columns = message_columns(console.width, status_width)
    table = Table(show_edge=False, pad_edge=False, width=console.width)
    for name in columns:
        if name in ("recipients", "subject"):
            table.add_column(name, overflow="fold", ratio=1)
        else:
            table.add_column(name, no_wrap=True, min_width=_FIXED.get(name, status_width),
                             justify="right" if name == "attempts" else "left")
    for m in messages:
        cells = {"id": m.id, "status": m.status, "attempts": str(m.attempts),
                 "created": m.created_at[:16].replace("T", " "),
                 "recipients": ", ".join(r.address for r in m.recipients), "subject": m.subject}
        table.add_row(*(escape(cells[name]) for name in columns))
    console.print(table)


def print_detail(console: Console, m: MessageOut) -> None:
    """A message and its timeline. What it shows is data (a subject someone typed, a
    relay's reply, guidance that names `[retry]`), never Rich markup: as markup, `[/]` in
    a subject made `outbox status` fail and `[see ...]` in a reply vanished."""
    lines = [f"id          {m.id}",
             f"status      {m.status}" + (f" ({m.hold_reason})" if m.hold_reason else ""),
             f"message-id  {m.message_id}", f"from        {m.sender}",
             f"subject     {m.subject}",
             f"attempts    {m.attempts}   created {m.created_at}"
             + (f"   next attempt {m.next_attempt_at}" if m.next_attempt_at else "")]
    if m.claim is not None:
        lines.append(f"claim       {m.claim.note}")
    for line in lines:
        console.print(line, markup=False)
    recipients = Table(title="recipients", show_edge=False, title_justify="left")
    for column in ("address", "kind", "relay", "status", "reply"):
        recipients.add_column(column, overflow="fold")
    for r in m.recipients:
        reply = " ".join(str(x) for x in (r.reply_code, r.enhanced_code, r.reply) if x)
        recipients.add_row(*(escape(cell) for cell in (r.address, r.kind, r.relay, r.status,
                                                         reply)))
    console.print(recipients)
    shown = set()
    for r in m.recipients:
        if r.guidance and r.status != "sent":
            console.print(f"  {r.address}: {r.guidance}", markup=False)
            shown.add(r.guidance)
    why = _hold_guidance(m)
    if why and why not in shown:
        console.print(f"  held: {why}", markup=False)
    _print_timeline(console, m)


def _hold_guidance(m: MessageOut) -> str | None:
    """A message held at submit (internal domains, a policy) has no recipient guidance:
    the `held` event carries it, and the hold reason alone says nothing of what to do."""
    if m.status != "held":
        return None
    held = [e for e in m.events if e.type in ("held", "alert") and e.guidance]
    return held[-1].guidance if held else None


def _print_timeline(console: Console, m: MessageOut) -> None:
    timeline = Table(title="timeline", show_edge=False, title_justify="left")
    for column in ("at", "event", "attempt", "recipient", "reply / detail"):
        timeline.add_column(column, overflow="fold")
    for e in m.events:
        reply = " ".join(str(x) for x in (e.reply_code, e.enhanced_code, e.reply) if x)
        timeline.add_row(*(escape(cell) for cell in (
            e.at[:23], e.type, str(e.attempt or ""), e.recipient or "",
            "; ".join(x for x in (reply, e.detail) if x))))
    console.print(timeline)


def print_report(console: Console, report: Report) -> None:
    """The doctor's checks as a table, then the fixes for what failed or warned."""
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
