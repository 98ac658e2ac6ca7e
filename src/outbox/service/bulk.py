"""Acting on every message that matches a filter (the UI's "retry all N matching"):
find the matching ids page by page, then retry, release or cancel each one through
`Messages`, so each gets the checks of a single retry or cancel; what is refused is
reported with the reason, never hidden.

What a confirmation counted is what is acted on: `count_for_confirmation` names the
newest message it counted, `apply_to_matching` leaves every message accepted after it
alone, and does nothing when more messages match up to it than were counted (an older
message changed into the filter meanwhile), so that the user is asked again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from outbox.core.model import MessageStatus
from outbox.errors import InputError, OutboxError
from outbox.service.messages import Messages
from outbox.store.values import ANY_MESSAGE, MessageFilter

PAGE = 200
ACTIONS = ("retry", "release", "cancel")


@dataclass(frozen=True, slots=True)
class Counted:
    """What a confirmation names: how many matched, up to the newest one counted."""

    count: int
    newest: tuple[datetime, str] | None  # (accepted at, id); None: nothing matched

    @property
    def token(self) -> str:
        """The count and bound as text, for a form to carry back (signed by the UI)."""
        if self.newest is None:
            return f"{self.count}"
        at, id = self.newest
        return f"{self.count}:{int((at - _EPOCH) / _MICROSECOND)}:{id}"

    @classmethod
    def parse(cls, token: str) -> Counted:
        """`InputError` for text `token` did not make."""
        count, _, rest = token.partition(":")
        micros, _, id = rest.partition(":")
        try:
            newest = (_EPOCH + int(micros) * _MICROSECOND, id) if rest else None
            if newest is not None and not id:
                raise ValueError(token)
            return cls(int(count), newest)
        except (ValueError, OverflowError):
            raise InputError("the confirmation is not one Outbox made",
                             field="confirmed") from None


@dataclass(frozen=True, slots=True)
class BulkResult:
    action: str
    matched: int
    done: int
    refused: tuple[tuple[str, str], ...]  # (message id, why)
    newer: int = 0  # matching, but accepted after the confirmation's count: left alone
    acted: bool = True  # False: more matched than were confirmed, so nothing was done


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


async def matching_ids(messages: Messages, status: MessageStatus | None,
                       where: MessageFilter,
                       up_to: tuple[datetime, str] | None = None) -> tuple[list[str], int]:
    """Every message id `messages.list` would page through for this filter, up to the
    message `up_to` (accepted at, id) if given; and how many newer ones were left out."""
    ids: list[str] = []
    newer = 0
    cursor: str | None = None
    while True:
        page = await messages.list(status, PAGE, cursor, where)
        for message in page.messages:
            if up_to is not None and (message.created_at, message.id) > up_to:
                newer += 1
            else:
                ids.append(message.id)
        if page.next_cursor is None:
            return ids, newer
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


async def count_for_confirmation(messages: Messages, status: MessageStatus | None,
                                 where: MessageFilter) -> Counted:
    """How many messages match, up to the newest matching one now: the bound comes first,
    so a message accepted while counting is neither counted nor, later, acted on."""
    first = (await messages.list(status, 1, None, where)).messages
    if not first:
        return Counted(0, None)
    newest = (first[0].created_at, first[0].id)
    until = newest[0] + _MICROSECOND  # `until` excludes; ties beyond the id: recounted
    bounded = replace(where, until=min(until, where.until) if where.until else until)
    return Counted(int(await count_matching(messages, status, bounded) or 0), newest)


def check_action(action: str, status: MessageStatus | None) -> None:
    if action not in ACTIONS:
        raise InputError(f"action: '{action}' is not one of {', '.join(ACTIONS)}",
                         field="action")
    if action == "release" and status is not MessageStatus.HELD:
        raise InputError("action: release applies to held messages only",
                         field="action", hint="filter by status held first")


async def apply_to_matching(messages: Messages, action: str, status: MessageStatus | None,
                            where: MessageFilter, confirmed: Counted) -> BulkResult:
    """Retry (release is a retry of held mail) or cancel every matching message the
    confirmation counted; none when more match up to its bound than it counted."""
    check_action(action, status)
    verb = messages.cancel if action == "cancel" else messages.retry
    if confirmed.newest is None:
        return BulkResult(action, 0, 0, ())
    ids, newer = await matching_ids(messages, status, where, confirmed.newest)
    if len(ids) > confirmed.count:
        return BulkResult(action, len(ids), 0, (), newer, acted=False)
    done, refused = 0, []
    for id in ids:
        try:
            await verb(id)
            done += 1
        except OutboxError as exc:  # e.g. already sent: reported, the rest carries on
            refused.append((id, exc.message))
    return BulkResult(action, len(ids), done, tuple(refused), newer)
