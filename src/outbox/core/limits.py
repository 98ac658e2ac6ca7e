"""Named limits on what one message may ask for: recipients and extra headers. Pure.

Each refusal names the field, the limit and the `[limits]` key that raises it.
`count_recipients` is cheap (no validation), so a list far over the limit is
refused before anything expands or parses it; `check_recipient_count` runs
again on the envelope after groups and aliases are expanded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from outbox.core.addresses import split_entries
from outbox.errors import LimitExceeded, TooManyRecipients

RecipientField = str | Sequence[str] | None


def count_entries(value: RecipientField) -> int:
    """How many addresses a To/Cc/Bcc value holds, as the parser will split it."""
    if not value:
        return 0
    values = [value] if isinstance(value, str) else list(value)
    return sum(_entries_in(v) for v in values)


def _entries_in(text: str) -> int:
    if "," not in text and ";" not in text and ":" not in text:
        return 1 if text.strip() else 0
    found = split_entries(text)
    return len(found) if found is not None else 1


def check_recipient_count(fields: Sequence[tuple[str, RecipientField]], limit: int) -> None:
    """Raise `TooManyRecipients` naming the field (`to`, `cc`, `bcc`) whose entries take
    the running total past `limit`."""
    total = 0
    for name, value in fields:
        total += count_entries(value)
        if total > limit:
            raise too_many_recipients(name, total, limit)


def too_many_recipients(field: str, count: int, limit: int) -> TooManyRecipients:
    return TooManyRecipients(
        f"{field}: {count:,} recipients, over the limit of {limit:,} per message "
        "(limits.max_recipients); send larger lists with POST /v1/messages/batch",
        field=field)


def check_headers(headers: Mapping[str, str], max_count: int, max_size: int) -> None:
    """At most `max_count` extra headers, each at most `max_size` bytes (name + value)."""
    if len(headers) > max_count:
        raise LimitExceeded(f"headers: {len(headers):,} extra headers, over the limit of "
                            f"{max_count:,} (limits.max_headers)", field="headers")
    for name, value in headers.items():
        size = len(name.encode("utf-8", "replace")) + len(value.encode("utf-8", "replace"))
        if size > max_size:
            raise LimitExceeded(f"header {name[:76]!r} is {size:,} bytes, over the limit of "
                                f"{max_size:,} (limits.max_header_size)",
                                field=f"headers.{name}")
