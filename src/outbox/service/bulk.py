"""Acting on every message that matches a filter (the UI's "retry all N matching"):
find the matching ids page by page, then retry, release or cancel each one through
`Messages`, so each gets the checks of a single retry or cancel; what is refused is
reported with the reason, never hidden."""

from __future__ import annotations

from dataclasses import dataclass

from outbox.core.model import MessageStatus
from outbox.errors import InputError, OutboxError
from outbox.service.messages import Messages
from outbox.store.values import ANY_MESSAGE, MessageFilter

PAGE = 200
ACTIONS = ("retry", "release", "cancel")


@dataclass(frozen=True, slots=True)
class BulkResult:
    action: str
    matched: int
    done: int
    refused: tuple[tuple[str, str], ...]  # (message id, why)


async def matching_ids(messages: Messages, status: MessageStatus | None,
                       where: MessageFilter) -> list[str]:
    """Every message id `messages.list` would page through for this filter."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await messages.list(status, PAGE, cursor, where)
        ids.extend(m.id for m in page.messages)
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


async def count_matching(messages: Messages, status: MessageStatus | None,
                         where: MessageFilter, *, exact: bool = True) -> int | None:
    """How many messages match: from the queue's counts when only a status narrows (or
    nothing does); otherwise one count over the filter, or None when not `exact` (a
    list page does not pay for it)."""
    if where == ANY_MESSAGE:
        by_status = (await messages.stats()).by_status
        return int(by_status.get(status, 0)) if status else int(sum(by_status.values()))
    return await messages.store.messages.count(status, where) if exact else None


def check_action(action: str, status: MessageStatus | None) -> None:
    if action not in ACTIONS:
        raise InputError(f"action: '{action}' is not one of {', '.join(ACTIONS)}",
                         field="action")
    if action == "release" and status is not MessageStatus.HELD:
        raise InputError("action: release applies to held messages only",
                         field="action", hint="filter by status held first")


async def apply_to_matching(messages: Messages, action: str, status: MessageStatus | None,
                            where: MessageFilter) -> BulkResult:
    """Retry (release is a retry of held mail) or cancel every matching message."""
    check_action(action, status)
    verb = messages.cancel if action == "cancel" else messages.retry
    ids = await matching_ids(messages, status, where)
    done, refused = 0, []
    for id in ids:
        try:
            await verb(id)
            done += 1
        except OutboxError as exc:  # e.g. already sent: reported, the rest carries on
            refused.append((id, exc.message))
    return BulkResult(action, len(ids), done, tuple(refused))
