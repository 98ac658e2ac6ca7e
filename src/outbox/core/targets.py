"""Which webhook URLs and addresses Outbox may post to (SSRF).

A URL is http or https with a host and no user name or password. Every address
its host resolves to must be public: loopback, private, link-local, shared
(CGNAT), multicast, reserved and unspecified addresses are refused, unless a
network in `[webhooks] allowed_networks` holds the address. The check runs when
an endpoint is added and again at each connection (a name may change what it
resolves to). Pure: the caller resolves.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(ValueError):
    """A URL or address Outbox will not post to; the message says why."""


class TargetUnresolved(TargetRefused):
    """A host name with no address (now): nothing to post to, nothing refused either."""


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings (`127.0.0.0/8`, `10.1.2.3`) → networks; ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"'{value}' is not an IP network like 10.0.0.0/8") from None
    return tuple(networks)


def check_url(url: str) -> tuple[str, int]:
    """The URL's host and port; `TargetRefused` unless it is http(s) with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"'{url}' is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("a webhook URL must start with http:// or https://")
    if not parts.hostname:
        raise TargetRefused("a webhook URL needs a host name")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("a webhook URL must not carry a user name or password; receivers "
                            "check the signature instead")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def refusal(address: Address, allowed: Sequence[Network]) -> str | None:
    """Why `address` may not be posted to, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address.version == net.version and address in net for net in allowed):
        return None
    # The narrower kinds first: Python counts link-local and unspecified as private too.
    for kind, flagged in (("loopback", address.is_loopback),
                          ("link-local", address.is_link_local),
                          ("unspecified", address.is_unspecified),
                          ("multicast", address.is_multicast),
                          ("reserved", address.is_reserved), ("private", address.is_private)):
        if flagged:
            return f"{address} is a {kind} address"
    return None if address.is_global else f"{address} is not a public address"


def check_addresses(host: str, addresses: Sequence[str], allowed: Sequence[Network]) -> None:
    """`TargetRefused` unless every address `host` resolved to may be posted to."""
    if not addresses:
        raise TargetUnresolved(f"{host} has no address")
    for text in addresses:
        reason = refusal(ipaddress.ip_address(text.split("%", 1)[0]), allowed)
        if reason:
            raise TargetRefused(f"{host}: {reason}; add its network to [webhooks] "
                                "allowed_networks to allow it")
