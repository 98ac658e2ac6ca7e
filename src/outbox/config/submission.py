"""`[submission]`: the SMTP submission listener, and the networks whose clients send
without logging in."""

from __future__ import annotations

import functools
import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from outbox.config.sections import (
    Duration,
    ListenAddress,
    Section,
    check_host_port,
    is_loopback_host,
)


class SubmissionSettings(ListenAddress, Section):
    bind: str = Field("", description="host:port of the SMTP submission listener, e.g. "
                      "0.0.0.0:587; empty: none")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls: STARTTLS offered (AUTH only after it, except on a "
        "loopback bind); tls: TLS from the first byte (port 465); none: plaintext, only on "
        "a loopback bind")
    cert_file: str = Field("", description="PEM certificate (chain) the listener presents; "
                           "required unless security = \"none\"")
    key_file: str = Field("", description="PEM private key of cert_file; empty: in cert_file")
    hostname: str = Field("", description="name in the greeting and EHLO reply; empty: this "
                          "host's FQDN")
    max_connections: int = Field(100, ge=1, description="client connections at once; more "
                                 "get 421 and are closed")
    max_recipients: int = Field(1000, ge=1, description="RCPT TO per message; more get "
                                "452 4.5.3 (the client sends them in another transaction)")
    max_errors: int = Field(20, ge=1, description="4xx/5xx replies a connection may get "
                            "before it is closed with 421")
    command_timeout: Duration = Field(timedelta(minutes=5), description="a client that "
                                      "sends nothing for this long is disconnected (RFC 5321 "
                                      "4.5.3.2.7: at least 5 minutes)")
    trusted_networks: list[str] = Field(
        [], description="client networks (CIDR, like 127.0.0.1/32 or 10.1.0.0/16) whose mail "
        "is taken without AUTH, as the API key trusted_key (Postfix's mynetworks); empty: "
        "every client logs in")
    trusted_key: str = Field("", description="name of the API key (send scope) that mail "
                             "from trusted_networks is submitted as: it owns the messages "
                             "and its rate limits apply")

    @functools.cached_property
    def trusted(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """trusted_networks, parsed once (checked when settings with a bind are read)."""
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.trusted_networks)

    def is_trusted(self, host: str) -> bool:
        """Whether a client at `host` (an IP address) submits without AUTH."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's IPv4 client
        return any(address in network for network in self.trusted)

    @property
    def auth_needs_tls(self) -> bool:
        """AUTH only after STARTTLS: a STARTTLS listener on a bind that is not loopback
        (tls is encrypted from the start; none is allowed only on loopback)."""
        return self.security == "starttls" and not is_loopback_host(self.host)

    @model_validator(mode="after")
    def _check_listener(self) -> SubmissionSettings:
        if not self.bind:
            return self
        check_host_port(self.bind, "0.0.0.0:587")
        if self.security == "none" and not is_loopback_host(self.host):
            raise ValueError(f"security \"none\" is only allowed on a loopback bind, not "
                             f"{self.host} (passwords would cross the network in clear)")
        if self.security != "none" and not self.cert_file:
            raise ValueError(f"cert_file is required with security \"{self.security}\"")
        for key in ("cert_file", "key_file"):
            path = getattr(self, key)
            if path and not Path(path).is_file():
                raise ValueError(f"{key} '{path}' does not exist")
        if self.command_timeout <= timedelta(0):
            raise ValueError("command_timeout must be more than 0s")
        self._check_trusted()
        return self

    def _check_trusted(self) -> None:
        for network in self.trusted_networks:
            try:
                parsed = ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"trusted_networks: '{network}' is not a network; write "
                                 f"it like 127.0.0.1/32, ::1/128 or 10.1.0.0/16") from None
            if parsed.prefixlen == 0:
                raise ValueError(f"trusted_networks: '{network}' is every address: anyone "
                                 f"who reaches the listener could send as trusted_key")
        if self.trusted_networks and not self.trusted_key:
            raise ValueError("trusted_networks needs trusted_key: the name of the API key "
                             "their mail is submitted as")
