"""DKIM keys for the command line: make one, and the DNS records that publish the
configured ones (no database needed). Signing itself is `delivery.dkim`, run by the
worker."""

from __future__ import annotations

from dataclasses import dataclass

from outbox.config import DkimKey, Settings
from outbox.delivery.dkim import generate_key, load_key, public_record


@dataclass(frozen=True, slots=True)
class DnsRecord:
    name: str  # <selector>._domainkey.<domain>
    value: str  # v=DKIM1; k=...; p=...


def record_for(entry: DkimKey) -> DnsRecord:
    return DnsRecord(f"{entry.selector}._domainkey.{entry.domain}", public_record(entry))


def configured_records(settings: Settings) -> list[DnsRecord]:
    """The TXT record of every [[dkim.keys]] entry (`ConfigError` for a bad key)."""
    for index, entry in enumerate(settings.dkim.keys):
        load_key(entry, f"dkim.keys[{index}]")
    return [record_for(entry) for entry in settings.dkim.keys]


def new_key(domain: str, selector: str, algorithm: str) -> tuple[str, DnsRecord]:
    """A new private key (PEM) and the record that publishes it."""
    pem = generate_key(algorithm)
    entry = DkimKey(domain=domain, selector=selector, algorithm=algorithm,
                    private_key=pem)
    return pem, record_for(entry)
