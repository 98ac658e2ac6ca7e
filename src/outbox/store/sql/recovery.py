"""The SQL of crash recovery: claims whose owner died or whose lease ran out,
and a claim its owner gives back after a delivery raised.

What becomes of each message is decided by `core.recovery` (passed in as a
callable); this module only finds the claims, asks, and writes the verdict in
the transaction that found them.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, or_, select, update

from outbox.core.model import MessageStatus, RecipientStatus
from outbox.core.recovery import AbandonedClaim, Cause, RecoveryVerdict
from outbox.store.base import Decide
from outbox.store.rows import AnyRow
from outbox.store.sql.queries import SENDING, UNFINISHED, insert_events
from outbox.store.tables import messages, recipients

m = messages


def claim_holders(conn: Connection) -> set[str]:
    """The owners holding at least one claim."""
    query = select(m.c.claimed_by).where(m.c.status == SENDING).distinct()
    return {owner for owner in conn.execute(query).scalars() if owner}


def recover_stale(conn: Connection, now: datetime, dead_owners: Collection[str],
                  decide: Decide) -> list[str]:
    """Every claim past its lease or held by a dead owner gets its verdict. A row another
    transaction holds (on PostgreSQL: a process frozen inside one, a record finishing)
    is passed by until a later sweep: waiting on it held up every claim after it."""
    stale = m.c.lease_until < now
    if dead_owners:
        stale = or_(stale, m.c.claimed_by.in_(sorted(dead_owners)))
    query = (select(m.c.id, m.c.claimed_by, m.c.attempts, m.c.created_at, m.c.held_seconds)
             .where(m.c.status == SENDING, stale).order_by(m.c.id)
             .with_for_update(skip_locked=True))
    found = conn.execute(query).all()
    for row in found:
        cause = Cause.OWNER_GONE if row.claimed_by in dead_owners else Cause.LEASE_EXPIRED
        apply_verdict(conn, row.id, now, decide(abandoned_claim(row, cause)))
    return [row.id for row in found]


def abandon_claim(conn: Connection, id: str, token: str, now: datetime,
                  verdict: RecoveryVerdict) -> bool:
    """The owner gives its claim back; False when it no longer holds it."""
    query = (select(m.c.id).where(m.c.id == id, m.c.claim_token == token, m.c.status == SENDING)
             .with_for_update())
    if conn.execute(query).first() is None:
        return False
    apply_verdict(conn, id, now, verdict)
    return True


def apply_verdict(conn: Connection, id: str, now: datetime, verdict: RecoveryVerdict) -> None:
    held = verdict.status is MessageStatus.HELD
    conn.execute(update(m).where(m.c.id == id).values(
        status=verdict.status.value, due_at=verdict.due_at, attempts=m.c.attempts + 1,
        updated_at=now, claimed_by=None, claim_token=None, lease_until=None,
        held_since=now if held else None, hold_reason=verdict.hold_reason if held else "",
        held_for_relay=None))
    if verdict.fails:
        conn.execute(update(recipients)
                     .where(recipients.c.message_id == id, recipients.c.status.in_(UNFINISHED))
                     .values(status=RecipientStatus.FAILED.value,
                             guidance=verdict.fail_guidance))
    insert_events(conn, [(id, event) for event in verdict.events])


def renew_leases(conn: Connection, owner: str, tokens: Collection[str],
                 lease_until: datetime) -> int:
    """Extend only the claims whose delivery is still running (by token)."""
    if not tokens:
        return 0
    stmt = (update(m).where(m.c.status == SENDING, m.c.claimed_by == owner,
                            m.c.claim_token.in_(sorted(tokens)))
            .values(lease_until=lease_until))
    return int(conn.execute(stmt).rowcount)


def abandoned_claim(row: AnyRow, cause: Cause) -> AbandonedClaim:
    values: Any = row
    return AbandonedClaim(owner=values.claimed_by or "an unknown worker",
                          attempts_made=values.attempts, accepted_at=values.created_at,
                          held_for=timedelta(seconds=float(values.held_seconds)), cause=cause,
                          may_have_sent=True)
