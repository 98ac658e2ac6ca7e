"""API keys, settings and alerts in a real Chromium: a new key is shown once, works
against /v1 and stops working when revoked; the settings page never shows a secret of
the config; alerts show the active ones with their fix. Admin-only pages refuse others."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.processes import API_KEY, TLS, wait_until
from tests.smtpd import ScriptedServer
from tests.ui.conftest import StartUi
from tests.ui.support import ADMIN_KEY, Ui

# One backend (tests/ui/conftest.py): the keys, alerts and settings pages cannot differ by
# backend.
BACKENDS = ("postgres",)

RELAY_SECRET = "relay-pw-Zq81xx"
LDAP_SECRET = "ldap-bind-pw-Kp42yy"
WEBHOOK_SECRET = "alert-hmac-Wd77zz"


def test_a_new_key_is_shown_once_works_and_is_revoked(ui: Ui, page: Page) -> None:
    ui.sign_in(page, "sally")  # a sender may not manage keys
    expect(page.get_by_role("link", name="API keys")).to_have_count(0)
    page.goto(f"{ui.url}/keys")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    ui.sign_in(page, "admin")
    page.get_by_role("link", name="API keys").click()
    forged = page.evaluate("""async () => (await fetch('/ui/keys', {method: 'POST',
        body: new URLSearchParams({name: 'forged', scope: 'admin'})})).status""")
    assert forged == 403  # no CSRF token: refused, and no key made
    page.get_by_label("Name", exact=True).fill("robot")
    expect(page.get_by_label("admin", exact=True)).not_to_be_checked()
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_contain_text("shown this once")
    key = page.get_by_label("The new key").input_value()
    assert key.startswith("ob_")
    row = page.locator('#key-list tr[data-key="robot"]')
    expect(row).to_contain_text("send, read")
    with httpx.Client(base_url=ui.process.base_url,
                      headers={"Authorization": f"Bearer {key}"}, verify=TLS) as client:
        assert client.get("/v1/messages").status_code == 200
        page.goto(f"{ui.url}/keys")  # never again
        expect(row).to_be_visible()
        assert key not in page.content()
        row.get_by_role("link", name="Revoke robot").click()
        expect(page.locator("#confirm-revoke")).to_contain_text("Revoke API key robot?")
        assert client.get("/v1/messages").status_code == 200  # not before the confirmation
        page.get_by_role("button", name="Yes, revoke robot").click()
        expect(page.locator("#notice")).to_contain_text("API key robot revoked")
        expect(page.locator("#revoked-keys")).to_contain_text("robot")
        expect(page.locator("#key-list")).not_to_contain_text("forged")
        assert client.get("/v1/messages").status_code == 401


def test_the_settings_page_masks_every_secret(start_ui: StartUi, sink: ScriptedServer,
                                              page: Page) -> None:
    ui = start_ui(relays=[
        {"name": "default", "host": "127.0.0.1", "port": sink.port, "security": "none"},
        {"name": "backup", "host": "127.0.0.1", "port": sink.port, "security": "none",
         "username": "mailer", "password": RELAY_SECRET}],
        ldap={"url": "ldap://127.0.0.1:9", "base_dn": "dc=example,dc=test",
              "bind_dn": "cn=reader,dc=example,dc=test", "bind_password": LDAP_SECRET},
        alerts={"webhook_url": "http://127.0.0.1:9/hooks/T0KENPATH",
                "webhook_secret": WEBHOOK_SECRET})
    ui.sign_in(page, "vic")  # a viewer may not read the configuration
    page.goto(f"{ui.url}/settings")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    ui.sign_in(page, "admin")
    page.get_by_role("link", name="Settings").click()
    config = page.locator("#config")
    expect(config).to_contain_text('username = "mailer"')
    expect(config).to_contain_text("***")
    expect(config).to_contain_text("cn=reader,dc=example,dc=test")
    html = page.content()
    for secret in (RELAY_SECRET, LDAP_SECRET, WEBHOOK_SECRET, "T0KENPATH", API_KEY,
                   ADMIN_KEY):
        assert secret not in html, secret
    # The address book's directory page shows the server, not the bind password.
    page.goto(f"{ui.url}/directory")
    expect(page.locator("#ldap-status")).to_have_text("configured")
    assert LDAP_SECRET not in page.content()


def test_the_alerts_page_shows_active_alerts_with_the_fix(start_ui: StartUi,
                                                          page: Page) -> None:
    # A relay nobody listens on: connections refused, so the failure-rate alert rises.
    ui = start_ui(relays=[{"name": "default", "host": "127.0.0.1", "port": 9,
                           "security": "none"}],
                  alerts={"evaluate_every": "200ms", "window": "1m", "failure_ratio": 0.1,
                          "min_attempts": 1, "oldest_queued_age": "1s"})
    page.goto(f"{ui.url}/alerts")  # signed out: the sign-in page first
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    with ui.api() as api:
        for n in range(3):
            assert api.post("/v1/messages", json={
                "from": "app@example.test", "to": f"n{n}@example.test", "subject": "x",
                "text": "x"}).status_code == 202
    ui.sign_in(page, "vic")
    with ui.api() as api:
        wait_until(lambda: api.get("/v1/alerts?active=true").json()["alerts"], timeout=60,
                   message="an alert raised")
        alert = api.get("/v1/alerts?active=true").json()["alerts"][0]
    page.get_by_role("link", name="Alerts").click()
    item = page.locator(f'#active-alerts li[data-key="{alert["key"]}"]')
    expect(item).to_contain_text(alert["title"])
    expect(item.locator(".fix")).to_have_text(alert["guidance_detail"]["next_step"])
    expect(page.locator("#alert-history")).to_be_visible()


def test_a_relay_without_a_login_is_not_said_to_log_in(ui: Ui, page: Page) -> None:
    ui.sign_in(page, "sally")
    page.goto(f"{ui.url}/relays")
    # Never reached yet: its state is only the absence of a failed login, not "ok".
    expect(page.locator(".relay dd.state")).to_have_text("no failed login recorded")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-default [role=status]")).to_have_text(
        "Relay default: connected (no login configured).")


def test_a_notice_in_a_link_is_not_shown_unless_outbox_made_it(ui: Ui, page: Page) -> None:
    """A stranger pass sent a signed-in admin a link whose green success box read as
    Outbox's own ("re-enter the SMTP password at https://evil.example/"). Notices are
    signed with the session now: a crafted one shows nothing, Outbox's own still show."""
    ui.sign_in(page, "admin")
    spoof = "Relay credentials were reset. Re-enter the SMTP password at https://evil.example/"
    page.goto(f"{ui.url}/relays?notice={spoof}")
    expect(page.get_by_role("heading", name="Relays")).to_be_visible()
    expect(page.locator("#notice")).to_have_count(0)
    assert "evil.example" not in page.content()

    page.goto(f"{ui.url}/groups")
    page.locator("#new-group").get_by_label("Name").fill("Night shift")
    page.locator("#new-group").get_by_label("Members (one a line)").fill("night@example.test")
    page.locator("#new-group").get_by_role("button", name="Save group").click()
    expect(page.locator("#notice")).to_have_text("Group Night shift saved with 1 member(s).")
