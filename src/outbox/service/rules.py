"""The rules the configuration sets for submitted mail, built from settings:
the routing table, the size and type limits, the internal-domain policy.

Light on purpose (config and core only): `outbox route explain` uses them
without opening a database.
"""

from __future__ import annotations

from collections.abc import Iterable

from outbox.config import Settings
from outbox.core.compose import Limits
from outbox.core.routing import InternalPolicy, Route, RoutingTable, default_relay_name


def routing_table(settings: Settings) -> RoutingTable:
    names = [relay.name for relay in settings.relays]
    return RoutingTable(tuple(Route(r.match, r.relay) for r in settings.routes),
                        default_relay_name(names))


def limits(settings: Settings) -> Limits:
    lim = settings.limits
    return Limits(lim.max_message_size, lim.max_attachment_size,
                  frozenset(e.lower() for e in lim.blocked_extensions),
                  frozenset(e.lower() for e in lim.allowed_extensions), lim.extension_policy,
                  lim.max_recipients, lim.max_headers, lim.max_header_size)


def internal_policy(settings: Settings) -> InternalPolicy:
    return InternalPolicy(tuple(settings.internal_domains),
                          frozenset(r.name for r in settings.relays if r.internal))


def external_addresses(policy: InternalPolicy, recipients: Iterable[str]) -> list[str]:
    """The recipients (addr-specs) outside every `internal_domains` entry, each once;
    none when the policy names no internal domain (then nothing is "external")."""
    if not policy.domains:
        return []
    found = (a for a in recipients if policy.rule_for(a.rpartition("@")[2]) is None)
    return list(dict.fromkeys(found))
