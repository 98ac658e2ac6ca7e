"""Fixtures for tests against the scripted SMTP server (tests/smtpd.py).

- `tls_certs` (session): a private CA and server certificates (trustme).
- `smtp_server` (factory): `smtp_server(script=[...], auth=("u", "p"),
  tls="starttls"|"implicit", cert="good"|"expired"|"wrong_host"|..., size_limit=N,
  ...)` starts a `ScriptedServer`, stopped after the test. Without `script=`,
  the test's `@pytest.mark.smtp_script(rule, ...)` marker gives the script.
- `make_relay` (factory): `make_relay(server, **overrides)` → `RelaySettings`
  pointing at the server, trusting the test CA.
- `delivery_settings`: short timeouts and a fixed EHLO name (no DNS).
- (autouse) the CLI's logging, when a test runs `outbox` in this process, without
  structlog's logger cache.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from outbox.cli import common
from outbox.config import DeliverySettings, LdapSettings, RelaySettings, Settings
from outbox.service.contacts import ContactBook
from outbox.store.factory import open_store

if str(Path(__file__).resolve().parents[2]) not in sys.path:  # `tests` as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.smtpd import CertKind, ScriptedServer, TlsCerts, TlsMode

ServerFactory = Callable[..., ScriptedServer]
RelayFactory = Callable[..., RelaySettings]


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> TlsCerts:
    return TlsCerts(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest, tls_certs: TlsCerts) -> Iterator[ServerFactory]:
    started: list[ScriptedServer] = []
    marker = request.node.get_closest_marker("smtp_script")

    def start(*, script: Any = None, tls: TlsMode | None = None, cert: CertKind = "good",
              **options: Any) -> ScriptedServer:
        if script is None:
            script = marker.args if marker is not None else ()
        context = tls_certs.server_context(cert) if tls else None
        server = ScriptedServer(script=script, tls=tls, tls_context=context, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def make_relay(tls_certs: TlsCerts) -> RelayFactory:
    def make(server: ScriptedServer, **overrides: Any) -> RelaySettings:
        security = {"starttls": "starttls", "implicit": "tls", None: "none"}[server.tls]
        values: dict[str, Any] = {"name": "test", "host": server.host, "port": server.port,
                                  "security": security, "ca_file": tls_certs.ca_file}
        values.update(overrides)
        return RelaySettings(**values)

    return make


@pytest.fixture
def delivery_settings() -> DeliverySettings:
    return DeliverySettings(
        connect_timeout=timedelta(seconds=3), command_timeout=timedelta(seconds=3),
        data_timeout=timedelta(seconds=5), idle_timeout=timedelta(seconds=30),
        messages_per_connection=100, helo_name="client.test")


@pytest.fixture(autouse=True)
def uncached_cli_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """`outbox` run in this process (`main()`) configures structlog to cache each module's
    logger on first use. A logger cached then outlives the test, and its lines escape
    `structlog.testing.capture_logs` in a later test on the same worker (the relay
    governor's back-off lines after `test_cli_relay_health`). The CLI keeps its logging,
    without the cache."""
    configure = common.configure_logging

    def without_cache(settings: Settings) -> None:
        configure(settings)
        structlog.configure(cache_logger_on_first_use=False)

    monkeypatch.setattr(common, "configure_logging", without_cache)


@pytest.fixture
async def book(tmp_path: Path) -> AsyncIterator[ContactBook]:
    """A contact book on a fresh SQLite database (the contact import tests)."""
    store = await open_store(f"sqlite:///{tmp_path}/outbox.db")
    await store.migrate()
    yield ContactBook(store.contacts, LdapSettings())
    await store.close()
