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
