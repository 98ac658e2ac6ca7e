"""Connect with OAuth2 from the relays page against a real local authorization server
(authorization endpoint, token endpoint, PKCE S256 checked): the refresh token is stored
and the relay then delivers with XOAUTH2; a redirect URI the provider does not know is
shown as a named error with the URI to register."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.oauth_smtpd import CLIENT_ID, CLIENT_SECRET, MAILBOX, Authority, xoauth2_server
from tests.processes import free_port, wait_until
from tests.smtpd import ScriptedServer
from tests.ui.conftest import StartUi
from tests.ui.oauth_provider import Provider, ProviderServer
from tests.ui.support import Ui

# One backend (tests/ui/conftest.py): the OAuth2 connect flow cannot differ by backend.
BACKENDS = ("postgres",)


@pytest.fixture
def authority() -> Authority:
    return Authority()


@pytest.fixture
def relay(authority: Authority) -> Iterator[ScriptedServer]:
    with xoauth2_server(authority) as server:
        yield server


def start(start_ui: StartUi, relay: ScriptedServer, authority: Authority
          ) -> tuple[Ui, Provider, ProviderServer]:
    port = free_port()
    provider = Provider(authority, registered=[f"http://127.0.0.1:{port}/ui/oauth/callback"])
    server = ProviderServer(provider).__enter__()
    oauth: dict[str, Any] = {"token_url": f"{server.base}/token", "client_id": CLIENT_ID,
                             "client_secret": CLIENT_SECRET,
                             "authorize_url": f"{server.base}/authorize"}
    ui = start_ui(relays=[{"name": "default", "host": "127.0.0.1", "port": relay.port,
                           "security": "none", "username": MAILBOX, "oauth2": oauth}],
                  server={"bind": f"127.0.0.1:{port}"})
    return ui, provider, server


def test_connect_with_oauth2_then_deliver_with_xoauth2(
        start_ui: StartUi, relay: ScriptedServer, authority: Authority, page: Page) -> None:
    ui, provider, server = start(start_ui, relay, authority)
    try:
        ui.sign_in(page, "admin")
        page.get_by_role("link", name="Relays").click()
        expect(page.get_by_text(f"{ui.url}/oauth/callback")).to_be_visible()  # to register
        page.get_by_role("button", name="Connect with OAuth2").click()
        expect(page.locator("#notice")).to_contain_text("connected with OAuth2")
        asked = provider.authorize_requests[-1]
        assert asked["code_challenge_method"] == "S256" and asked["code_challenge"]
        assert provider.redeemed and provider.pkce_failures == 0
        assert provider.redeemed[0] not in page.content()  # never shown

        with ui.api() as api:
            answer = api.post("/v1/messages", json={"from": MAILBOX, "to": "x@example.test",
                                                    "subject": "via oauth", "text": "hi"})
        assert answer.status_code == 202
        wait_until(lambda: len(relay.messages) == 1, timeout=30, message="delivered")
        assert authority.accepted  # logged in with an access token of the stored refresh token
        assert relay.connections[-1].authenticated_as == MAILBOX
    finally:
        server.__exit__()


def test_a_wrong_redirect_uri_is_a_named_error(
        start_ui: StartUi, relay: ScriptedServer, authority: Authority, page: Page) -> None:
    ui, provider, server = start(start_ui, relay, authority)
    try:
        # Reached as localhost, the UI's redirect URI is not the registered 127.0.0.1 one.
        port = ui.process.config["server"]["bind"].rsplit(":", 1)[1]
        local = f"http://localhost:{port}/ui"
        page.goto(f"{local}/login")
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"{local}/relays")
        page.get_by_role("button", name="Connect with OAuth2").click()
        expect(page.get_by_role("heading", name="OAuth2 connection refused")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("redirect_uri_mismatch")
        expect(page.locator("main")).to_contain_text(
            f"register exactly {local}/oauth/callback as a redirect URI")
        assert not provider.redeemed and not authority.refresh_tokens
    finally:
        server.__exit__()
