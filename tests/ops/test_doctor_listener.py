"""`outbox doctor` on the SMTP submission listener: its certificate file (names,
expiry, key) and the listener itself, probed like a client. The listener is the
real one (`outbox.submission`), run in this test's event loop."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trustme

from outbox.config import Settings
from outbox.ops.checks import Check, Report, Status
from outbox.service import Outbox
from outbox.service.diagnostics import doctor
from outbox.submission import SubmissionListener, bind_socket
from tests.ops.conftest import ConfigFactory, settings_of
from tests.processes import free_port
from tests.smtpd import TlsCerts


def certificate(certs: TlsCerts, tmp_path: Path, *, days: int = 90,
                ca: trustme.CA | None = None) -> str:
    now = dt.datetime.now(dt.UTC)
    issued = (ca or certs.ca).issue_cert("127.0.0.1", "localhost",
                                         not_before=now - dt.timedelta(days=1),
                                         not_after=now + dt.timedelta(days=days))
    path = tmp_path / f"listener-{days}.pem"
    issued.private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


def listener_config(make_config: ConfigFactory, cert_file: str, **submission: Any) -> Settings:
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}
    return settings_of(make_config(relay, submission={
        "bind": f"127.0.0.1:{free_port()}", "cert_file": cert_file, **submission}))


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[None]:
    outbox = await Outbox.open(settings)
    listener = SubmissionListener(outbox, bind_socket(settings.submission))
    await listener.start()
    try:
        yield
    finally:
        await listener.close(grace=1)
        await outbox.close()


def listener_checks(report: Report) -> dict[str, Check]:
    prefix = "smtp submission: "
    return {c.name.removeprefix(prefix): c for c in report.checks if c.name.startswith(prefix)}


async def test_a_running_listener_and_its_certificate_pass(
        make_config: ConfigFactory, tls_certs: TlsCerts, tmp_path: Path) -> None:
    settings = listener_config(make_config, certificate(tls_certs, tmp_path))
    async with running(settings):
        checks = listener_checks(await doctor(settings))

    assert {name: c.status for name, c in checks.items()} == {
        "certificate": Status.PASS, "listener": Status.PASS}
    assert "for 127.0.0.1, localhost, valid until" in checks["certificate"].detail
    assert "89 days left" in checks["certificate"].detail
    detail = checks["listener"].detail
    assert detail.startswith(f"{settings.submission.bind} answers (TLSv1.")
    assert "SIZE 25000000; AUTH LOGIN PLAIN" in detail


async def test_a_listener_that_does_not_answer_fails(
        make_config: ConfigFactory, tls_certs: TlsCerts, tmp_path: Path) -> None:
    settings = listener_config(make_config, certificate(tls_certs, tmp_path))
    report = await doctor(settings)
    check = listener_checks(report)["listener"]
    assert check.status is Status.FAIL and not report.ok
    assert check.detail.startswith(settings.submission.bind)
    assert "outbox serve" in check.fix


async def test_certificate_expiring_soon_expired_or_not_matching_its_key(
        make_config: ConfigFactory, tls_certs: TlsCerts, tmp_path: Path) -> None:
    """Default certificate_warning: 14 days."""
    soon = certificate(tls_certs, tmp_path, days=5)
    expired = certificate(tls_certs, tmp_path, days=-1)
    other_key = str(tmp_path / "other-key.pem")
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(other_key)
    found: dict[str, Check] = {}
    cases: list[tuple[str, Callable[[], Settings]]] = [
        ("soon", lambda: listener_config(make_config, soon)),
        ("expired", lambda: listener_config(make_config, expired)),
        ("mismatch", lambda: listener_config(make_config, soon, key_file=other_key))]
    for name, settings in cases:
        found[name] = listener_checks(await doctor(settings()))["certificate"]

    assert found["soon"].status is Status.WARN and "4 days left" in found["soon"].detail
    assert found["expired"].status is Status.FAIL and "expired" in found["expired"].detail
    assert found["mismatch"].status is Status.FAIL
    assert "cannot be used" in found["mismatch"].detail and "cert_file" in found["mismatch"].fix


async def test_without_a_listener_there_is_nothing_to_check(
        make_config: ConfigFactory) -> None:
    report = await doctor(settings_of(make_config()))
    assert listener_checks(report) == {}
