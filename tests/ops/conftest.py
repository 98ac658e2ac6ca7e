"""Fixtures for the operator tools: a migrated SQLite database, the scripted SMTP
server (tests/smtpd.py) with test certificates, and configs as dicts that become
`Settings` (in-process) or a TOML file (for the CLI as a subprocess)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from outbox.config import Settings
from outbox.service import Outbox
from outbox.service.relays import CredentialsUpdate
from tests.oauth_smtpd import (
    CLIENT_ID,
    CLIENT_SECRET,
    MAILBOX,
    Authority,
    TokenEndpoint,
    XOAuth2Handler,
)
from tests.pg import sqlite_template
from tests.processes import write_config
from tests.smtpd import CertKind, ScriptedServer, TlsCerts, TlsMode

ServerFactory = Callable[..., ScriptedServer]
ConfigFactory = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> TlsCerts:
    return TlsCerts(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A fresh, migrated SQLite database for this test."""
    path = tmp_path / "outbox.db"
    shutil.copyfile(sqlite_template(), path)
    return f"sqlite:///{path}"


@pytest.fixture
def smtp_server(tls_certs: TlsCerts) -> Iterator[ServerFactory]:
    """smtp_server(script=[...], tls="starttls", cert="expired", auth=(u, p), ...)"""
    started: list[ScriptedServer] = []

    def start(*, tls: TlsMode | None = None, cert: CertKind = "good",
              **options: Any) -> ScriptedServer:
        context = tls_certs.server_context(cert) if tls else None
        server = ScriptedServer(tls=tls, tls_context=context, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def relay_for(tls_certs: TlsCerts) -> Callable[..., dict[str, Any]]:
    """The [[relays]] entry for a scripted server (trusting the test CA)."""
    def make(server: ScriptedServer, **overrides: Any) -> dict[str, Any]:
        security = {"starttls": "starttls", "implicit": "tls", None: "none"}[server.tls]
        relay = {"name": "test", "host": server.host, "port": server.port,
                 "security": security, "ca_file": tls_certs.ca_file}
        return {**relay, **overrides}

    return make


@pytest.fixture
def make_config(tmp_path: Path, database_url: str) -> ConfigFactory:
    """make_config(relay, ..., section={...}) → a config dict with short timeouts."""
    def make(*relays: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {
            "database": {"url": database_url},
            "logging": {"level": "info", "file": str(tmp_path / "outbox.log")},
            "delivery": {"connect_timeout": "3s", "command_timeout": "3s",
                         "data_timeout": "5s", "helo_name": "client.test"},
            "doctor": {"min_free_disk": "1MB"},
            "relays": list(relays),
        }
        for name, values in sections.items():
            config[name] = {**config.get(name, {}), **values}
        return config

    return make


def settings_of(config: dict[str, Any]) -> Settings:
    return Settings(**config)


def config_file(tmp_path: Path, config: dict[str, Any]) -> Path:
    return write_config(tmp_path / "outbox.toml", config)


CONFIG_REFRESH, STORED_REFRESH = "OAUTHREFRESH_r6", "NEWREFRESH_n4"


@dataclass
class OAuthRelay:
    authority: Authority
    server: ScriptedServer
    relay: dict[str, Any]  # the [[relays]] entry: its refresh token is CONFIG_REFRESH


@pytest.fixture
def oauth_relay(smtp_server: ServerFactory, relay_for: Callable[..., dict[str, Any]]
                ) -> Iterator[OAuthRelay]:
    """An XOAUTH2 relay whose token endpoint takes only STORED_REFRESH (the one given
    to `outbox relay set-credentials`), not the config file's CONFIG_REFRESH."""
    authority = Authority(refresh_tokens={STORED_REFRESH})
    with TokenEndpoint(authority) as endpoint:
        server = smtp_server(handler=XOAuth2Handler(authority), auth_mechanisms=())
        relay = relay_for(server, name="oauthrelay", username=MAILBOX, oauth2={
            "token_url": endpoint.url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "refresh_token": CONFIG_REFRESH})
        yield OAuthRelay(authority, server, relay)


async def set_credentials(config: dict[str, Any], relay: str, **update: str) -> None:
    """What `outbox relay set-credentials RELAY --no-verify` does: seal and store them."""
    outbox = await Outbox.open(settings_of(config), migrate=False)
    try:
        await outbox.relays.set_credentials(relay, CredentialsUpdate(**update))
    finally:
        await outbox.close()
