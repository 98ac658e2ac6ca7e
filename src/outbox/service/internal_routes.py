"""The internal-domains policy applied to mail being stored or released: held when an
internal recipient would leave through a relay not flagged internal, and moved to the
relay the current routes give it when an operator releases it (the config may have
been fixed since). The decisions are `core.routing`'s; this says what they mean for a
message."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from outbox.core.model import Hold, RecipientStatus
from outbox.core.routing import (
    INTERNAL_ROUTE_VIOLATION,
    InternalPolicy,
    RoutingTable,
    internal_violations,
)
from outbox.errors import Conflict
from outbox.store.base import NewRecipient, Recipient

log = structlog.get_logger("outbox.service")


def hold_if_internal_leaks(recipients: Sequence[NewRecipient], policy: InternalPolicy,
                           requested: str | None = None) -> Hold | None:
    """Held, naming the rule, when an internal recipient would leave through a
    relay not flagged internal (also when the client asked for that relay)."""
    found = internal_violations([(r.address, r.relay) for r in recipients], policy, requested)
    if not found:
        return None
    more = f" (and {len(found) - 1} more recipient(s))" if len(found) > 1 else ""
    log.warning("message held: internal recipient on a non-internal relay",
                recipient=found[0].address, relay=found[0].relay, rule=found[0].pattern)
    return Hold(found[0].describe() + more, INTERNAL_ROUTE_VIOLATION)


def rerouted(recipients: Sequence[Recipient], policy: InternalPolicy,
             routing: RoutingTable) -> dict[str, str]:
    """For unsent recipients that break the internal policy: the relay the current
    routes give them, where that differs. `Conflict` if the policy still fails."""
    unsent = [r for r in recipients if r.status is not RecipientStatus.SENT]
    if not internal_violations([(r.address, r.relay) for r in unsent], policy):
        return {}
    moved = {r.address: relay for r in unsent
             if (relay := routing.relay_for(r.address.rpartition("@")[2]))
             and relay != r.relay}
    still = internal_violations([(r.address, moved.get(r.address, r.relay))
                                 for r in unsent], policy)
    if still:
        raise Conflict(f"not released: {still[0].describe()}",
                       hint="route the domain through a relay with internal = true in the "
                            "config and restart Outbox, or cancel the message")
    return moved
