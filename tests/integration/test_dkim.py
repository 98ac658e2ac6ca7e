"""DKIM signing at delivery: a signed message verifies with dkimpy's verifier against
the generated keys (the verifier's `dnsfunc` answers with the test's public key
records), for RSA and Ed25519 (dual signing), for a small message and for a 20 MB
attachment streamed from a blob source through the MIME writer."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from outbox.config import DkimKey, DkimSettings
from outbox.core.content import AttachmentRef, MessageContent
from outbox.delivery.dkim import DkimSigner, SignedBody, public_record
from outbox.delivery.mime_writer import MimeWriter
from outbox.errors import ConfigError

NOW = time.time()  # dkimpy refuses a t= in the future of its own clock


def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def ed25519_pem() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def keys() -> list[DkimKey]:
    return [DkimKey(domain="example.test", selector="rsa1", algorithm="rsa-sha256",
                    private_key=rsa_pem()),  # type: ignore[arg-type]
            DkimKey(domain="example.test", selector="ed1", algorithm="ed25519-sha256",
                    private_key=ed25519_pem())]  # type: ignore[arg-type]


def dns_for(keys: list[DkimKey]) -> Any:
    records = {f"{k.selector}._domainkey.{k.domain}.".encode(): public_record(k).encode()
               for k in keys}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return dnsfunc


def verify_all(message: bytes, keys: list[DkimKey]) -> list[bytes]:
    """The a= of every signature, each verified with dkimpy (raises on none)."""
    verifier = dkim.DKIM(message)
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    assert count == len(keys)
    algorithms = []
    for index in range(count):
        assert verifier.verify(idx=index, dnsfunc=dns_for(keys)), f"signature {index}"
        algorithms.append(verifier.signature_fields[b"a"])
    return algorithms


class MemoryBlobs:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    async def read(self, sha256: str, size: int) -> AsyncIterator[bytes]:
        data = self.blobs[sha256]
        for start in range(0, len(data), 1 << 20):
            yield data[start:start + (1 << 20)]

    async def check(self, sha256: str, size: int) -> None:
        assert len(self.blobs[sha256]) == size


def content(**extra: Any) -> MessageContent:
    return MessageContent(from_="Shop <shop@example.test>", to=("ann@example.org",),
                          subject="Your order  ✓", text="Hello  \n\n.dot line\n",
                          date="Tue, 01 Dec 2026 10:00:00 +0000", **extra)


@pytest.mark.parametrize("canonicalization", ["relaxed/relaxed", "relaxed/simple",
                                              "simple/simple"])
async def test_a_small_message_verifies_for_rsa_and_ed25519(keys: list[DkimKey],
                                                            canonicalization: str) -> None:
    signer = DkimSigner(DkimSettings(keys=keys, canonicalization=canonicalization))
    body = MimeWriter(MemoryBlobs({})).body_for(content(), "<m1@example.test>").as_bytes()
    signed = await signer.sign(body, "Shop <shop@example.test>", NOW)
    assert isinstance(signed, bytes) and signed.endswith(body)
    assert verify_all(signed, keys) == [b"rsa-sha256", b"ed25519-sha256"]


async def test_a_changed_body_or_header_no_longer_verifies(keys: list[DkimKey]) -> None:
    signer = DkimSigner(DkimSettings(keys=keys[:1]))
    body = MimeWriter(MemoryBlobs({})).body_for(content(), "<m2@example.test>").as_bytes()
    signed = await signer.sign(body, "shop@example.test", NOW)
    assert isinstance(signed, bytes)
    assert not dkim.verify(signed.replace(b"Hello", b"Hallo"), dnsfunc=dns_for(keys))
    assert b"ann@example.org" in signed
    assert not dkim.verify(signed.replace(b"ann@example.org", b"eve@example.org"),
                           dnsfunc=dns_for(keys))
    assert dkim.verify(signed, dnsfunc=dns_for(keys))


async def test_mail_from_a_domain_without_a_key_is_sent_unsigned(keys: list[DkimKey]) -> None:
    signer = DkimSigner(DkimSettings(keys=keys))
    assert await signer.sign(b"From: a@other.test\r\n\r\nhi\r\n", "a@other.test", NOW) == (
        b"From: a@other.test\r\n\r\nhi\r\n")


async def test_a_20_mb_attachment_streamed_verifies(keys: list[DkimKey]) -> None:
    data = os.urandom(20_000_000)
    sha = hashlib.sha256(data).hexdigest()
    files = (AttachmentRef("big.bin", "application/octet-stream", sha, len(data)),)
    planned = MimeWriter(MemoryBlobs({sha: data})).body_for(content(attachments=files),
                                                             "<m3@example.test>")
    assert not planned.is_small
    signer = DkimSigner(DkimSettings(keys=keys))
    signed = await signer.sign(planned, "Shop <shop@example.test>", NOW)
    assert isinstance(signed, SignedBody)
    wire = b"".join([chunk async for chunk in signed.chunks()])
    assert len(wire) == signed.size > 27_000_000
    assert verify_all(wire, keys) == [b"rsa-sha256", b"ed25519-sha256"]


def test_an_unusable_key_is_one_config_line_naming_it() -> None:
    bad = DkimKey(domain="example.test", selector="s", algorithm="rsa-sha256",
                  private_key="not a key")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"dkim.keys\[0\].private_key"):
        DkimSigner(DkimSettings(keys=[bad]))
