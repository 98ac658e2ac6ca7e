"""`outbox doctor` on the SMTP submission listener ([submission] bind): its
certificate file and the listener itself, probed as a client would (connect,
greeting, EHLO, TLS), then QUIT; no mail is sent.

`observe_listener` looks (reads the files, probes); `listener_checks` decides,
without I/O, from what was observed.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from outbox.config import DeliverySettings, RelaySettings, SubmissionSettings
from outbox.delivery.smtp.probe import ProbeResult, probe
from outbox.ops.checks import Check, failed, failure_check, passed, warned

PREFIX = "smtp submission"
START = ("Start `outbox serve` (or `outbox submission`) with this config, or clear "
         "[submission] bind if no listener is wanted.")
CERT_FIX = ("Point [submission] cert_file (and key_file) at a PEM certificate chain and its "
            "private key for the name clients connect to.")


@dataclass(frozen=True, slots=True)
class Certificate:
    names: tuple[str, ...] = ()
    expires: datetime | None = None
    problem: str = ""  # unreadable, not a certificate, key does not match


@dataclass(frozen=True, slots=True)
class ListenerObservation:
    settings: SubmissionSettings
    max_message_size: int
    certificate: Certificate | None  # None: security = none
    probe: ProbeResult


async def observe_listener(settings: SubmissionSettings, max_message_size: int,
                           delivery: DeliverySettings) -> ListenerObservation | None:
    """None when no listener is configured."""
    if not settings.bind:
        return None
    certificate = read_certificate(settings) if settings.security != "none" else None
    target = RelaySettings(name=PREFIX, host=_connect_host(settings.host), port=settings.port,
                           security=settings.security, tls_verify=False)
    return ListenerObservation(settings, max_message_size, certificate,
                               await probe(target, delivery))


def read_certificate(settings: SubmissionSettings) -> Certificate:
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            settings.cert_file, settings.key_file or None)
        leaf = x509.load_pem_x509_certificates(Path(settings.cert_file).read_bytes())[0]
    except (OSError, ssl.SSLError, ValueError) as exc:
        return Certificate(problem=str(exc))
    return Certificate(_names(leaf), leaf.not_valid_after_utc)


def _names(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        alternative = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(str(name.value) for name in alternative.value)


def _connect_host(host: str) -> str:
    """Where a local client reaches the bind: a wildcard is reached on loopback."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return host


def listener_checks(observed: ListenerObservation, now: datetime,
                    warning: timedelta) -> list[Check]:
    checks = [] if observed.certificate is None else [
        certificate_check(observed.settings, observed.certificate, now, warning)]
    return [*checks, listening_check(observed)]


def certificate_check(settings: SubmissionSettings, cert: Certificate, now: datetime,
                      warning: timedelta) -> Check:
    name = f"{PREFIX}: certificate"
    if cert.problem or cert.expires is None:
        return failed(name, f"{settings.cert_file} cannot be used: {cert.problem}", CERT_FIX)
    detail = (f"{settings.cert_file} for {', '.join(cert.names) or '(no names)'}, valid until "
              f"{cert.expires:%Y-%m-%d} ({(cert.expires - now).days} days left)")
    if cert.expires <= now:
        return failed(name, f"{detail}: expired; clients refuse it", CERT_FIX)
    if cert.expires - now < warning:
        return warned(name, detail, "Renew the certificate before it expires; then restart "
                      "Outbox so the listener loads it.")
    return passed(name, detail)


def listening_check(observed: ListenerObservation) -> Check:
    name, settings, result = f"{PREFIX}: listener", observed.settings, observed.probe
    if result.failure is not None:
        found = failure_check(name, result.failure)
        return failed(name, f"{settings.bind}: {found.detail}", START)
    info = result.info
    session = f"{info.tls_version} {info.cipher or ''}".strip() if info.tls_version else (
        "plaintext")
    offered = set(info.auth_mechanisms)
    detail = (f"{settings.bind} answers ({session}); SIZE {info.size_limit}; AUTH "
              f"{' '.join(sorted(offered)) or 'not offered'}")
    if not {"PLAIN", "LOGIN"} <= offered:
        return failed(name, detail, "Something else answers on [submission] bind, or it "
                      "offers no AUTH PLAIN and LOGIN: check which program listens there.")
    if info.size_limit != observed.max_message_size:
        return warned(name, detail, f"The listener advertises another SIZE than [limits] "
                      f"max_message_size ({observed.max_message_size}): restart Outbox to "
                      "apply the config.")
    return passed(name, detail)
