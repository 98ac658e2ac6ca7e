"""The query of `GET /v1/messages`: status, page size, cursor and the filters
(recipient, relay, since/until, subject search), each validated as what it is."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query
from pydantic import BeforeValidator

from outbox.core.model import MessageStatus
from outbox.service import MessageFilter
from outbox.store.sql.listing import CURSOR_PATTERN


@dataclass(frozen=True)
class MessageQuery:
    status: MessageStatus | None
    limit: int
    cursor: str | None
    where: MessageFilter


def _iso_8601(value: object) -> object:
    """A time as text (ISO 8601), not a number of seconds as pydantic would also read."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("Input should be a time in ISO 8601, like 2026-01-31T12:00:00Z")
    return value


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
Time = Annotated[datetime, BeforeValidator(_iso_8601)]


def _utc(value: datetime | None) -> datetime | None:
    """A time without an offset is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


async def message_query(
    status: Annotated[MessageStatus | None, Query(description="only this status")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="messages per page")] = 50,
    cursor: Annotated[str | None, Query(
        min_length=1, max_length=400, pattern=CURSOR_PATTERN,
        description="next_cursor of the previous page, with the same filters")] = None,
    recipient: Annotated[str | None, Query(
        min_length=1, max_length=320, description="messages to this address (any case)")] = None,
    relay: Annotated[str | None, Query(
        min_length=1, max_length=100, description="messages with a recipient on this relay")]
    = None,
    since: Annotated[Time | None, Query(description="accepted at or after this time "
                                            "(ISO 8601; UTC without an offset)")] = None,
    until: Annotated[Time | None, Query(description="accepted before this time")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=998,
                                   description="subject contains this text (any case)")] = None,
) -> MessageQuery:
    where = MessageFilter(recipient=recipient, relay=relay, since=_utc(since),
                          until=_utc(until), subject=q)
    return MessageQuery(status, limit, cursor, where)
