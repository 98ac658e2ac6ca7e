"""Rich tables for the CLI: full ids, never truncated."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from outbox.api.schemas import MessageOut


def print_messages(console: Console, messages: Sequence[MessageOut]) -> None:
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=32)
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("created", no_wrap=True)
    table.add_column("recipients", overflow="fold")
    table.add_column("subject", overflow="ellipsis")
    for m in messages:
        table.add_row(m.id, m.status, str(m.attempts), m.created_at[:19],
                      ", ".join(r.address for r in m.recipients), m.subject)
    console.print(table)
    if not messages:
        console.print("no messages")


def print_detail(console: Console, m: MessageOut) -> None:
    console.print(f"id          {m.id}")
    console.print(f"status      {m.status}" + (f" ({m.hold_reason})" if m.hold_reason else ""))
    console.print(f"message-id  {m.message_id}")
    console.print(f"from        {m.sender}")
    console.print(f"subject     {m.subject}")
    console.print(f"attempts    {m.attempts}   created {m.created_at}"
                  + (f"   next attempt {m.next_attempt_at}" if m.next_attempt_at else ""))
    recipients = Table(title="recipients", show_edge=False, title_justify="left")
    for column in ("address", "kind", "relay", "status", "reply"):
        recipients.add_column(column, overflow="fold")
    for r in m.recipients:
        reply = " ".join(str(x) for x in (r.reply_code, r.enhanced_code, r.reply) if x)
        recipients.add_row(r.address, r.kind, r.relay, r.status, reply)
    console.print(recipients)
    for r in m.recipients:
        if r.guidance and r.status != "sent":
            console.print(f"  {r.address}: {r.guidance}")
    _print_timeline(console, m)


def _print_timeline(console: Console, m: MessageOut) -> None:
    timeline = Table(title="timeline", show_edge=False, title_justify="left")
    for column in ("at", "event", "attempt", "recipient", "reply / detail"):
        timeline.add_column(column, overflow="fold")
    for e in m.events:
        reply = " ".join(str(x) for x in (e.reply_code, e.enhanced_code, e.reply) if x)
        timeline.add_row(e.at[:23], e.type, str(e.attempt or ""), e.recipient or "",
                         "; ".join(x for x in (reply, e.detail) if x))
    console.print(timeline)
