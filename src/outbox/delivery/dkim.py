"""DKIM signing at delivery (RFC 6376; Ed25519 per RFC 8463), with dkimpy.

`DkimSigner(settings.dkim).sign(body, from_domain, now)` returns the body with one
DKIM-Signature header per key of the From domain in front (RSA and Ed25519: dual
signing), or the body unchanged for a domain without a key.

The body is never held whole: a streamed body (`MessageBody`) is read once to hash its
canonical body (`core.dkim_body`, checked against dkimpy's canonicalization in the
tests) and its header block; dkimpy then canonicalizes and signs the headers
(`DomainSigner.gen_header`, the code `dkim.DKIM.sign` runs after its own body hash),
and the signed body streams the header in front of the same chunks again. So a 100 MB
message costs a second read of its files, not 100 MB of memory.

Keys are read when the signer is built (`outbox serve` refuses to start on a key that
cannot be used: one line naming `dkim.keys[N]`).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from email.utils import getaddresses
from functools import cached_property
from typing import TYPE_CHECKING, Any

from outbox.core.dkim_body import BodyHasher, HeaderBlockTooLarge, MessageHasher
from outbox.core.report import Condition
from outbox.errors import BodyUnavailable, ConfigError

if TYPE_CHECKING:
    import nacl.signing
    from dkim.canonicalization import CanonicalizationPolicy

    from outbox.config import DkimKey, DkimSettings
    from outbox.delivery.body import MessageBody

# dkimpy (with dnspython), PyNaCl and cryptography's key formats load where a key is
# read or a signature made: every service starts a signer, most without keys.


@dataclass(frozen=True, slots=True)
class SigningKey:
    domain: bytes
    selector: bytes
    algorithm: bytes
    key: Any  # dkimpy's parsed RSA key, or a nacl SigningKey


class SignedBody:
    """A `MessageBody`: the DKIM-Signature headers, then the body's own chunks."""

    def __init__(self, prefix: bytes, body: MessageBody) -> None:
        self.prefix = prefix
        self.body = body

    @property
    def size(self) -> int:
        return len(self.prefix) + self.body.size

    @property
    def eight_bit(self) -> bool:
        return self.body.eight_bit

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        yield self.prefix
        async for chunk in self.body.chunks():
            yield chunk


class DkimSigner:
    def __init__(self, settings: DkimSettings) -> None:
        self.settings = settings
        self.body_algorithm = settings.canonicalization.split("/")[1]
        self.headers = tuple(name.lower().encode() for name in settings.headers)
        self.keys: dict[str, list[SigningKey]] = {}
        for index, entry in enumerate(settings.keys):
            loaded = load_key(entry, f"dkim.keys[{index}]")
            self.keys.setdefault(entry.domain.lower(), []).append(loaded)

    @cached_property
    def policy(self) -> CanonicalizationPolicy:
        """dkimpy's canonicalization (c=)."""
        from dkim.canonicalization import CanonicalizationPolicy

        return CanonicalizationPolicy.from_c_value(self.settings.canonicalization.encode())

    def keys_for(self, from_header: str) -> list[SigningKey]:
        """The keys of the From header's domain (none: sent unsigned)."""
        found = [address for _, address in getaddresses([from_header]) if "@" in address]
        if not found:
            return []
        return self.keys.get(found[0].rpartition("@")[2].lower(), [])

    async def sign(self, body: bytes | MessageBody, from_header: str,
                   now: float) -> bytes | MessageBody:
        """The body with its signatures in front; `BodyUnavailable` when the body
        cannot be read (or has no header block)."""
        keys = self.keys_for(from_header)
        if not keys:
            return body
        hasher = MessageHasher(BodyHasher(self.body_algorithm))
        try:
            if isinstance(body, bytes):
                hasher.feed(body)
            else:
                async for chunk in body.chunks():
                    hasher.feed(chunk)
        except HeaderBlockTooLarge as exc:
            raise BodyUnavailable(f"cannot DKIM-sign: {exc}",
                                  condition=Condition.PROTOCOL_ERROR.value) from exc
        headers, body_hash = hasher.finish()
        prefix = b"".join(self.signature(key, headers, body_hash, int(now)) for key in keys)
        return prefix + body if isinstance(body, bytes) else SignedBody(prefix, body)

    def signature(self, key: SigningKey, headers: bytes, body_hash: bytes, now: int) -> bytes:
        """One DKIM-Signature header field (CRLF-terminated) over `headers`."""
        import dkim

        signer = dkim.DKIM(headers + b"\r\n", linesep=b"\r\n")
        signer.signature_algorithm = key.algorithm
        signer.hasher = dkim.HASH_ALGORITHMS[key.algorithm]
        present = {name.lower() for name, _ in signer.headers}
        include = tuple(name for name in self.headers if name in present)
        fields = [(b"v", b"1"), (b"a", key.algorithm), (b"c", self.policy.to_c_value()),
                  (b"d", key.domain), (b"i", b"@" + key.domain), (b"q", b"dns/txt"),
                  (b"s", key.selector), (b"t", str(now).encode()),
                  (b"h", b" : ".join(include)), (b"bh", body_hash), (b"b", b"0" * 60)]
        value = signer.gen_header(fields, include, self.policy, b"DKIM-Signature", key.key)
        return b"DKIM-Signature: " + bytes(value)


def load_key(entry: DkimKey, where: str) -> SigningKey:
    """The key of one `[[dkim.keys]]` entry, parsed; `ConfigError` naming it."""
    import nacl.exceptions
    from dkim.crypto import UnparsableKeyError, parse_pem_private_key

    text = entry.private_key.get_secret_value().strip().encode()
    algorithm = entry.algorithm.encode()
    try:
        key = _ed25519(text) if entry.algorithm == "ed25519-sha256" else (
            parse_pem_private_key(text))
    except (UnparsableKeyError, ValueError, TypeError, nacl.exceptions.CryptoError) as exc:
        raise ConfigError(f"{where}.private_key: not a usable {entry.algorithm} private key "
                          f"({exc})") from None
    return SigningKey(entry.domain.lower().encode(), entry.selector.encode(), algorithm, key)


def _ed25519(text: bytes) -> nacl.signing.SigningKey:
    """PKCS#8 PEM (openssl genpkey -algorithm ed25519) or dknewkey's base64 seed."""
    import nacl.encoding
    import nacl.signing
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if text.startswith(b"-----BEGIN"):
        private = serialization.load_pem_private_key(text, password=None)
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise ValueError("the PEM key is not an Ed25519 key")
        seed = private.private_bytes(serialization.Encoding.Raw,
                                     serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
        text = base64.b64encode(seed)
    return nacl.signing.SigningKey(text, encoder=nacl.encoding.Base64Encoder)


def public_record(entry: DkimKey) -> str:
    """The DNS TXT record value that publishes this key (`v=DKIM1; k=...; p=...`)."""
    from cryptography.hazmat.primitives import serialization

    text = entry.private_key.get_secret_value().strip().encode()
    if entry.algorithm == "ed25519-sha256":
        public = bytes(_ed25519(text).verify_key)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"
    private = serialization.load_pem_private_key(text, password=None)
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def generate_key(algorithm: str) -> str:
    """A new private key as PEM (PKCS#8): RSA 2048 bits, or Ed25519."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    private: Any = (ed25519.Ed25519PrivateKey.generate() if algorithm == "ed25519-sha256"
                    else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return private.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
