"""Helpers for tests of the SMTP submission listener: its certificate, its config, raw
messages, and reading the queue id back from the 250."""

from __future__ import annotations

import re
import secrets
import ssl
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

from tests.processes import API_KEY, base_config, free_port
from tests.smtpd import ScriptedServer, TlsCerts

USER = "app"  # the API key's name is the SMTP user name
PASSWORD = API_KEY
_QUEUED = re.compile(r"queued as (\S+) (<[^>]+>)")


def server_certificate(certs: TlsCerts, directory: Path,
                       names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> str:
    """A PEM file with the key and the chain of a certificate for `names`."""
    path = directory / f"submission-{secrets.token_hex(3)}.pem"
    certs.ca.issue_cert(*names).private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


def client_context(certs: TlsCerts) -> ssl.SSLContext:
    """What a client that trusts the test CA uses (certificate and name verified)."""
    return ssl.create_default_context(cafile=certs.ca_file)


def submission_config(tmp: Path, database_url: str, sink: ScriptedServer, cert_file: str,
                      *, host: str = "127.0.0.1", **submission: Any) -> dict[str, Any]:
    relay = {"name": "default", "host": "127.0.0.1", "port": sink.port, "security": "none"}
    settings = {"bind": f"{host}:{free_port()}", "security": "starttls",
                "cert_file": cert_file, **submission}
    return base_config(tmp, database_url, [relay], submission=settings)


def smtp_address(config: dict[str, Any]) -> tuple[str, int]:
    host, _, port = config["submission"]["bind"].rpartition(":")
    return host.strip("[]"), int(port)


def raw_message(*, to: str = "ann@example.test", subject: str = "Hello",
                message_id: str | None = None, attachment: tuple[str, bytes] | None = None,
                body: str = "Hello from a mailer.\n") -> tuple[bytes, str]:
    """The bytes a mail client sends, and its Message-ID."""
    message = EmailMessage()
    message["From"] = "Shop <shop@example.test>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id or f"<{secrets.token_hex(8)}@client.example.test>"
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(attachment[1], maintype="application",
                               subtype="octet-stream", filename=attachment[0])
    return message.as_bytes(policy=SMTP), str(message["Message-ID"])


def queued(reply: str) -> tuple[str, str]:
    """(queue id, Message-ID) from a 250 "queued as" reply."""
    match = _QUEUED.search(reply)
    assert match, f"no queue id in {reply!r}"
    return match.group(1), match.group(2)
