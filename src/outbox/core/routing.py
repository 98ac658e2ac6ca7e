"""Which relay carries a recipient: ordered rules, first match wins."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    match: str  # recipient domain glob
    relay: str


@dataclass(frozen=True, slots=True)
class RoutingTable:
    routes: tuple[Route, ...]
    default_relay: str | None

    def relay_for(self, domain: str, requested: str | None = None) -> str | None:
        """The requested relay, else the first matching route, else the default."""
        if requested:
            return requested
        domain = domain.lower()
        for route in self.routes:
            if fnmatch.fnmatchcase(domain, route.match.lower()):
                return route.relay
        return self.default_relay


def default_relay_name(names: Sequence[str]) -> str | None:
    """A relay named 'default' if there is one, else the first configured."""
    if "default" in names:
        return "default"
    return names[0] if names else None


# --- the internal-domains policy -----------------------------------------------------------

INTERNAL_ROUTE_VIOLATION = "internal_route_violation"  # the guidance key of a held message


@dataclass(frozen=True, slots=True)
class InternalPolicy:
    """`internal_domains` may only leave through relays flagged `internal = true`.

    A pattern is a domain glob; a pattern without a wildcard also covers its
    subdomains ('corp.example' covers 'mail.corp.example'), since a policy that
    must never leak should err on the side of internal."""

    domains: tuple[str, ...] = ()
    internal_relays: frozenset[str] = frozenset()

    def rule_for(self, domain: str) -> tuple[int, str] | None:
        """The first internal_domains entry (index, pattern) covering `domain`."""
        domain = domain.lower().rstrip(".")
        for index, pattern in enumerate(self.domains):
            pattern = pattern.lower()
            if fnmatch.fnmatchcase(domain, pattern):
                return index, pattern
            if not any(c in pattern for c in "*?[") and domain.endswith("." + pattern):
                return index, pattern
        return None

    def is_internal_relay(self, relay: str) -> bool:
        return relay in self.internal_relays


@dataclass(frozen=True, slots=True)
class Violation:
    """An internal recipient whose relay is not internal."""

    address: str
    relay: str
    rule_index: int
    pattern: str
    requested: bool  # the client asked for this relay

    def describe(self) -> str:
        how = "the client requested relay" if self.requested else "it is routed to relay"
        return (f"internal_domains[{self.rule_index}] ('{self.pattern}') makes {self.address} "
                f"internal, but {how} '{self.relay}', which is not internal = true")


def internal_violations(recipients: Sequence[tuple[str, str]], policy: InternalPolicy,
                        requested: str | None = None) -> list[Violation]:
    """Every (address, relay) pair that would take internal mail out through a
    relay not flagged internal."""
    found = []
    for address, relay in recipients:
        rule = policy.rule_for(address.rpartition("@")[2])
        if rule is not None and not policy.is_internal_relay(relay):
            found.append(Violation(address, relay, rule[0], rule[1], requested == relay))
    return found


# --- explaining a decision -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteExplanation:
    domain: str
    relay: str | None
    reason: str  # why this relay
    checked: tuple[str, ...]  # each route looked at, in order, and whether it matched
    internal_rule: str | None  # the internal_domains entry covering the domain
    violation: Violation | None

    def lines(self) -> list[str]:
        verdict = (f"HELD: {self.violation.describe()}" if self.violation
                   else "allowed: the relay may carry this recipient")
        internal = (f"internal: yes, by {self.internal_rule}" if self.internal_rule
                    else "internal: no (no internal_domains entry covers it)")
        return [f"domain: {self.domain}", *self.checked,
                f"relay: {self.relay or '(none)'} ({self.reason})", internal, verdict]


def explain_route(address: str, table: RoutingTable, policy: InternalPolicy,
                  requested: str | None = None) -> RouteExplanation:
    """Which relay carries `address` and why, and whether the policy allows it."""
    domain = address.rpartition("@")[2].lower() if "@" in address else address.lower()
    checked, matched = _check_routes(domain, table.routes)
    relay = table.relay_for(domain, requested)
    if requested:
        reason = "requested by the client; routes are not consulted"
    elif matched is not None:
        route = table.routes[matched]
        reason = f"routes[{matched}]: match '{route.match}' is the first that matches"
    else:
        reason = "no route matches, so the default relay"
    rule = policy.rule_for(domain)
    violation = None
    if relay is not None:
        found = internal_violations([(address, relay)], policy, requested)
        violation = found[0] if found else None
    return RouteExplanation(domain, relay, reason, tuple(checked),
                            f"internal_domains[{rule[0]}] ('{rule[1]}')" if rule else None,
                            violation)


def _check_routes(domain: str, routes: Sequence[Route]) -> tuple[list[str], int | None]:
    lines: list[str] = []
    first: int | None = None
    for index, route in enumerate(routes):
        hit = fnmatch.fnmatchcase(domain, route.match.lower())
        if hit and first is None:
            first = index
            lines.append(f"routes[{index}] match '{route.match}' -> {route.relay}: MATCHES")
        elif hit:
            lines.append(f"routes[{index}] match '{route.match}' -> {route.relay}: matches, "
                         "but an earlier route won")
        else:
            lines.append(f"routes[{index}] match '{route.match}' -> {route.relay}: no match")
    return lines, first
