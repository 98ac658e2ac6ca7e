"""TLS for relay sessions: the client context, and what a TLS error means.

Verification is on unless the relay says `tls_verify = false`; `ca_file` adds
a private CA to the system's trusted ones. Contexts are built once per
(verify, ca_file) pair and shared by every session that needs them.
"""

from __future__ import annotations

import ssl
from functools import lru_cache

from outbox.config import RelaySettings
from outbox.core.report import Condition

# OpenSSL X509_V_ERR_* codes carried by ssl.SSLCertVerificationError.verify_code.
_VERIFY_CODES = {
    10: Condition.TLS_CERT_EXPIRED,  # CERT_HAS_EXPIRED
    62: Condition.TLS_HOSTNAME_MISMATCH,  # HOSTNAME_MISMATCH
    64: Condition.TLS_HOSTNAME_MISMATCH,  # IP_ADDRESS_MISMATCH
    18: Condition.TLS_SELF_SIGNED,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: Condition.TLS_SELF_SIGNED,  # SELF_SIGNED_CERT_IN_CHAIN
    20: Condition.TLS_UNKNOWN_CA,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: Condition.TLS_UNKNOWN_CA,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
}

# OpenSSL reasons that mean "no TLS version both sides accept".
_VERSION_REASONS = frozenset({
    "UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE",
    "VERSION_TOO_LOW", "VERSION_TOO_HIGH", "WRONG_SSL_VERSION",
})

# The peer did not speak TLS at all: usually implicit TLS against a STARTTLS port.
_NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"})


def client_context(relay: RelaySettings) -> ssl.SSLContext:
    """The context for connections to `relay` (shared; do not modify it)."""
    return _context(relay.tls_verify, relay.ca_file)


@lru_cache(maxsize=32)
def _context(verify: bool, ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def condition_for(error: ssl.SSLError) -> Condition:
    """The guidance condition for a TLS failure."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return _VERIFY_CODES.get(error.verify_code, Condition.TLS_HANDSHAKE_FAILED)
    if error.reason in _VERSION_REASONS:
        return Condition.TLS_VERSION_MISMATCH
    return Condition.TLS_HANDSHAKE_FAILED


def describe(error: ssl.SSLError) -> str:
    """One line for the transcript and the failure detail."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate rejected: {error.verify_message} (code {error.verify_code})"
    if error.reason in _NOT_TLS_REASONS:
        return ("the server did not answer in TLS; for a port that expects STARTTLS "
                "use security = \"starttls\"")
    return f"TLS handshake failed: {error.reason or error}"
