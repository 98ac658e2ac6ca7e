"""Helpers for tests of the SMTP submission listener: its certificate, its config, raw
messages, and reading the queue id back from the 250."""

from __future__ import annotations

import contextlib
import email
import re
import secrets
import smtplib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any, cast

from tests.pg import database
from tests.processes import (
    API_KEY,
    OutboxProcess,
    base_config,
    free_port,
    wait_until,
    write_config,
)
from tests.smtpd import ScriptedServer, TlsCerts

USER = "app"  # the API key's name is the SMTP user name
PASSWORD = API_KEY
ADMIN_KEY = "ob_test_admin_key_5Jq2Lx8"  # makes and revokes keys (POST/DELETE /v1/keys)
_QUEUED = re.compile(r"queued as (\S+) (<[^>]+>)")


@dataclass
class Served:
    """An `outbox serve` with its submission listener (STARTTLS), and its relay sink."""

    outbox: OutboxProcess
    sink: ScriptedServer
    certs: TlsCerts
    host: str
    port: int

    def smtp(self, *, tls: bool = True, login: bool = True) -> smtplib.SMTP:
        client = smtplib.SMTP(self.host, self.port, timeout=30)
        if tls:
            client.starttls(context=client_context(self.certs))
        client.ehlo()
        if login:
            client.login(USER, PASSWORD)
        return client

    def final(self, id: str) -> dict[str, Any]:
        with self.outbox.client() as api:
            def settled() -> dict[str, Any] | None:
                body = api.get(f"/v1/messages/{id}").json()
                return body if body["status"] in {"sent", "failed", "held"} else None
            return dict(wait_until(settled, message=f"{id} to settle"))

    def send(self, message: EmailMessage | bytes) -> tuple[int, str]:
        """One message from shop@ to ann@ over STARTTLS and AUTH: DATA's reply."""
        raw = message if isinstance(message, bytes) else message.as_bytes(policy=SMTP)
        with self.smtp() as client:
            client.mail("shop@example.test")
            client.rcpt("ann@example.test")
            code, reply = client.data(raw)
        return code, reply.decode()

    def delivered(self, message_id: str) -> EmailMessage:
        """The message the sink received under `message_id`, once it has."""
        wait_until(lambda: message_id in self.sink.message_ids, message=f"{message_id} sent")
        (found,) = [m for m in self.sink.messages if m.message_id == message_id]
        return cast(EmailMessage, email.message_from_bytes(found.data, policy=SMTP))

    def message_ids(self) -> set[str]:
        with self.outbox.client() as api:
            page = api.get("/v1/messages", params={"limit": 500}).json()
        return {m["message_id"] for m in page["messages"]}


@contextlib.contextmanager
def serve_submission(backend: str, directory: Path) -> Iterator[Served]:
    """A real `outbox serve` on `backend` with the listener, an admin key and a sink."""
    certs = TlsCerts(directory)
    with ScriptedServer() as sink, database(backend, directory) as url:
        config = submission_config(directory, url, sink, server_certificate(certs, directory))
        config["auth"]["api_keys"].append({"name": "root", "key": ADMIN_KEY,
                                           "scopes": ["admin"]})
        process = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
        try:
            yield Served(process, sink, certs, *smtp_address(config))
        finally:
            process.stop(timeout=10)


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
