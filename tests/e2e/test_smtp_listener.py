"""The SMTP submission listener's own rules, on real processes: AUTH before TLS
refused on a bind that is not loopback, implicit TLS (port 465 style), the idle
timeout, `outbox submission` run alone beside `outbox serve` (and its 421 on a
graceful stop), and a taken port as one line. Transport rules, so SQLite only (the database
plays no part; the e2e submission tests cover both backends)."""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import OUTBOX, OutboxProcess, accepts, free_port, wait_until, write_config
from tests.smtpd import ScriptedServer, TlsCerts
from tests.submission import (
    PASSWORD,
    USER,
    client_context,
    queued,
    raw_message,
    server_certificate,
    smtp_address,
    submission_config,
)

# Shortened from the default 5m so that the test sees the timeout; the default is
# checked in tests/unit/test_submission_rules.py (test_defaults_no_listener_...).
SHORT_TIMEOUT = "1s"


def non_loopback_address() -> str | None:
    """This machine's address on its default route (UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.fixture(scope="module")
def sink() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsCerts:
    return TlsCerts(tmp_path_factory.mktemp("certs"))


def start(tmp: Path, config: dict[str, Any], command: str = "serve") -> OutboxProcess:
    process = OutboxProcess(write_config(tmp / f"{command}.toml", config), config,
                            command=command).start()
    if command != "serve":  # no /healthz: wait for the listener
        address = smtp_address(config)
        wait_until(lambda: accepts(address, process), message="the listener")
    return process


def test_auth_before_tls_on_a_non_loopback_bind_is_refused(
        tmp_path: Path, sink: ScriptedServer, certs: TlsCerts) -> None:
    """The rule itself is tabled in tests/unit/test_submission_rules.py; here a real
    listener on this machine's own non-loopback address applies it."""
    address = non_loopback_address()
    # Never skipped: a skip would count as a pass. The address is this machine's own
    # interface, so nothing leaves the host.
    assert address is not None, "this test needs a non-loopback IPv4 address on this machine"
    cert = server_certificate(certs, tmp_path, names=(address,))
    config = submission_config(tmp_path, f"sqlite:///{tmp_path}/outbox.db", sink, cert,
                               host=address)
    outbox = start(tmp_path, config)
    try:
        with smtplib.SMTP(*smtp_address(config), timeout=30) as client:
            client.ehlo()
            assert "auth" not in client.esmtp_features and "starttls" in client.esmtp_features
            code, reply = client.docmd("AUTH", "PLAIN AGFwcABvYl90ZXN0")
            assert (code, reply[:6]) == (538, b"5.7.11")
            assert client.docmd("MAIL FROM:<shop@example.test>")[0] == 530
            client.starttls(context=client_context(certs))
            client.ehlo()
            assert "auth" in client.esmtp_features
            client.login(USER, PASSWORD)
            raw, _ = raw_message()
            assert client.sendmail("shop@example.test", ["ann@example.test"], raw) == {}
    finally:
        outbox.stop(timeout=10)


@pytest.fixture(scope="module")
def tls_outbox(tmp_path_factory: pytest.TempPathFactory, sink: ScriptedServer,
               certs: TlsCerts) -> Iterator[tuple[OutboxProcess, dict[str, Any]]]:
    """`outbox serve` with an implicit TLS listener (port 465 style)."""
    tmp = tmp_path_factory.mktemp("tls")
    config = submission_config(tmp, f"sqlite:///{tmp}/outbox.db", sink,
                               server_certificate(certs, tmp), security="tls",
                               command_timeout=SHORT_TIMEOUT)
    outbox = start(tmp, config)
    try:
        yield outbox, config
    finally:
        outbox.stop(timeout=10)


def test_implicit_tls(tls_outbox: tuple[OutboxProcess, dict[str, Any]],
                      certs: TlsCerts) -> None:
    raw, message_id = raw_message()
    with smtplib.SMTP_SSL(*smtp_address(tls_outbox[1]), context=client_context(certs),
                          timeout=30) as client:
        client.login(USER, PASSWORD)  # AUTH at once: TLS from the first byte
        client.mail("shop@example.test")
        client.rcpt("ann@example.test")
        code, reply = client.data(raw)
    assert code == 250 and queued(reply.decode())[1] == message_id


def test_failed_tls_handshakes_keep_no_connection_slot(
        tls_outbox: tuple[OutboxProcess, dict[str, Any]], certs: TlsCerts) -> None:
    """More plaintext clients than max_connections (default 100) on the TLS port: each
    handshake fails and is closed, and a real client still gets in."""
    address = smtp_address(tls_outbox[1])
    for _ in range(101):
        with socket.create_connection(address, timeout=10) as plain:
            plain.sendall(b"EHLO client.example.test\r\n")
            assert plain.recv(512) == b""  # not TLS: closed by the server
    with smtplib.SMTP_SSL(*address, context=client_context(certs), timeout=30) as client:
        assert client.noop()[0] == 250


def test_a_silent_client_is_disconnected(tls_outbox: tuple[OutboxProcess, dict[str, Any]],
                                         certs: TlsCerts) -> None:
    with smtplib.SMTP_SSL(*smtp_address(tls_outbox[1]), context=client_context(certs),
                          timeout=30) as client:
        for _ in range(4):  # busy for twice the timeout: kept
            time.sleep(0.5)
            assert client.noop()[0] == 250
        started = time.monotonic()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.getreply()  # silent: the server hangs up
        assert 0.9 <= time.monotonic() - started < 10


def test_outbox_submission_runs_the_listener_alone(
        tmp_path: Path, tls_outbox: tuple[OutboxProcess, dict[str, Any]],
        sink: ScriptedServer, certs: TlsCerts) -> None:
    """On an extra node `outbox submission` queues and `outbox serve` delivers; it
    neither creates a database nor drops a client silently when stopped."""
    nowhere = submission_config(tmp_path, f"sqlite:///{tmp_path}/none.db", sink,
                                server_certificate(certs, tmp_path))
    missing = subprocess.run([*OUTBOX, "submission", "--config",
                              str(write_config(tmp_path / "none.toml", nowhere))],
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode != 0 and "does not exist yet" in missing.stderr
    assert not (tmp_path / "none.db").exists()

    shared = {**nowhere, "database": tls_outbox[1]["database"]}
    listener = start(tmp_path, shared, command="submission")
    try:
        raw, message_id = raw_message()
        with smtplib.SMTP(*smtp_address(shared), timeout=30) as client:
            client.starttls(context=client_context(certs))
            client.ehlo()
            client.login(USER, PASSWORD)
            assert client.sendmail("shop@example.test", ["ann@example.test"], raw) == {}
        wait_until(lambda: sink.message_ids[message_id] == 1, message="delivery")
        waiting = smtplib.SMTP(*smtp_address(shared), timeout=30)
    finally:
        listener.stop(timeout=10)
    code, reply = waiting.getreply()  # a graceful stop says so
    assert (code, reply[:5]) == (421, b"4.3.2")
    waiting.close()


def test_a_taken_port_is_one_line(tmp_path: Path, sink: ScriptedServer,
                                  certs: TlsCerts) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = submission_config(tmp_path, f"sqlite:///{tmp_path}/outbox.db", sink,
                                   server_certificate(certs, tmp_path))
        config["submission"]["bind"] = f"127.0.0.1:{taken.getsockname()[1]}"
        config["server"]["bind"] = f"127.0.0.1:{free_port()}"
        path = write_config(tmp_path / "outbox.toml", config)
        result = subprocess.run([*OUTBOX, "serve", "--config", str(path)], capture_output=True,
                                text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: submission.bind: {config['submission']['bind']} is already in use by another "
        "program (stop it, or choose another address with [submission] bind or "
        "OUTBOX_SUBMISSION__BIND)"]
    assert not (tmp_path / "outbox.db").exists()  # refused before anything started
