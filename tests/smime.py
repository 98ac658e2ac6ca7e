"""S/MIME for tests: a message signed as a mail client signs it, and openssl's verdict
on a signature after delivery."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID


def smime_signed(message_id: str, part: bytes, directory: Path) -> tuple[bytes, Path]:
    """A message signed as an S/MIME client signs it (detached, multipart/signed), and
    the signer's certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop@example.test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("shop@example.test")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    signed = (pkcs7.PKCS7SignatureBuilder().set_data(part)
              .add_signer(cert, key, hashes.SHA256())
              .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature]))
    head = (f"From: Shop <shop@example.test>\r\nTo: ann@example.test\r\nSubject: signed\r\n"
            f"Message-ID: {message_id}\r\n").encode()
    certificate = directory / "signer.pem"
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return head + signed, certificate


def verified(data: bytes, certificate: Path, directory: Path) -> bool:
    """Whether openssl finds the S/MIME signature good (the signer's certificate is the
    trust anchor: a self-signed test certificate)."""
    message = directory / "delivered.eml"
    message.write_bytes(data)
    run = subprocess.run(["openssl", "smime", "-verify", "-in", str(message),
                          "-CAfile", str(certificate), "-purpose", "any", "-out", os.devnull],
                         capture_output=True, text=True, check=False)
    return run.returncode == 0 and "Verification successful" in run.stderr
