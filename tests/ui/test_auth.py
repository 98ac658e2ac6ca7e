"""Sign in and out, a wrong password, throttled sign-ins, CSRF refusal of a forged form,
users made with the CLI (`outbox users create`, `outbox ui-user add`)."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.processes import TLS
from tests.ui.conftest import StartUi
from tests.ui.support import PASSWORD, Ui, cli_add_user

# One backend (tests/ui/conftest.py): sign-in, sessions and forms cannot differ by backend.
BACKENDS = ("sqlite",)


def test_sign_in_and_out(ui: Ui, page: Page) -> None:
    page.goto(f"{ui.process.base_url}/")  # / leads to the UI, which asks for a sign-in
    expect(page).to_have_url(f"{ui.url}/login?next=/ui/")
    ui.sign_in(page, "admin")
    cookie = next(c for c in page.context.cookies() if c["name"] == "outbox_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    assert PASSWORD not in cookie["value"]
    expect(page.get_by_text("admin (admin)")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(f"{ui.url}/messages")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_wrong_password_is_refused_with_a_message(ui: Ui, page: Page) -> None:
    page.goto(f"{ui.url}/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    assert not [c for c in page.context.cookies() if c["name"] == "outbox_session"]
    ui.sign_in(page, "admin")  # the right one still works


def test_sign_ins_are_throttled_after_repeated_failures(ui: Ui, page: Page) -> None:
    for _ in range(5):
        page.goto(f"{ui.url}/login")
        page.get_by_label("User name").fill("sally")
        page.get_by_label("Password").fill("wrong password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    page.goto(f"{ui.url}/login")
    page.get_by_label("User name").fill("sally")
    page.get_by_label("Password").fill(PASSWORD)  # even the right password waits now
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("too many failed sign-ins")
    # the client address has 5 failures too: another user waits as well
    page.goto(f"{ui.url}/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("too many failed sign-ins")


def test_a_forged_form_is_refused_and_does_nothing(ui: Ui, page: Page) -> None:
    ui.sign_in(page, "admin")
    # A form that did not come from this session's pages: the browser sends the cookie
    # (same site) but the form has no valid CSRF token.
    for token in ("", "forged-token"):
        page.evaluate("""token => {
            const f = document.createElement('form');
            f.method = 'post'; f.action = '/ui/logout';
            if (token) { const i = document.createElement('input');
              i.type = 'hidden'; i.name = 'csrf_token'; i.value = token; f.appendChild(i); }
            document.body.appendChild(f); f.submit(); }""", token)
        expect(page.get_by_role("heading", name="Request refused (CSRF)")).to_be_visible()
        page.goto(f"{ui.url}/")
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()  # still in
    # The sign-in form is protected too (login CSRF): no token cookie, no sign-in.
    answer = httpx.post(f"{ui.url}/login", data={"name": "admin", "password": PASSWORD,
                                                  "csrf_token": "x"}, verify=TLS)
    assert answer.status_code == 403 and "outbox_session" not in answer.cookies


def test_users_made_with_the_cli_sign_in(ui: Ui, page: Page) -> None:
    out = cli_add_user(ui.process, "carol", "sender", "carols password")
    assert "created with role sender" in out
    out = cli_add_user(ui.process, "dave", "viewer", "daves password", ("ui-user", "add"))
    assert "created with role viewer" in out
    ui.sign_in(page, "carol", "carols password")
    expect(page.get_by_text("carol (sender)")).to_be_visible()


def test_the_session_cookie_is_secure_behind_https(start_ui: StartUi) -> None:
    ui = start_ui(ui={"public_url": "https://outbox.example.test"})
    with httpx.Client(base_url=ui.process.base_url, verify=TLS) as client:
        form = client.get("/ui/login")
        assert "secure" in form.headers["set-cookie"].lower()
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        client.cookies.clear()  # a Secure cookie is not sent over http: send it by hand
        answer = client.post("/ui/login", data={"name": "admin", "password": PASSWORD,
                                                 "csrf_token": token},
                             headers={"Cookie": f"outbox_login={token}"})
        assert answer.status_code == 303
        cookie = next(c for c in answer.headers.get_list("set-cookie")
                      if c.startswith("outbox_session="))
        assert all(flag in cookie.lower() for flag in ("secure", "httponly", "samesite=lax"))


EXPIRED = "Your session expired: sign in again."


def sign_in_here(page: Page, name: str = "admin") -> None:
    """Sign in on the sign-in page the browser was sent to, keeping its `next`."""
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_after_an_expired_session_an_htmx_action_signs_in_back_to_its_page(
        ui: Ui, page: Page) -> None:
    ui.sign_in(page, "admin")
    page.goto(f"{ui.url}/relays")
    page.context.clear_cookies()  # the session ends as an expired one does: no cookie
    page.get_by_role("button", name="Test connection").click()  # htmx POST
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#session-expired")).to_have_text(EXPIRED)
    sign_in_here(page)
    expect(page.get_by_role("heading", name="Relays")).to_be_visible()
    expect(page).to_have_url(f"{ui.url}/relays")


def test_after_an_expired_session_a_form_signs_in_back_to_its_page(ui: Ui, page: Page) -> None:
    with ui.api() as api:
        id = api.post("/v1/messages", json={"from": "app@example.test", "to": "a@example.test",
                                            "subject": "resend me", "text": "hi"}).json()["id"]
    ui.sign_in(page, "admin")
    page.goto(f"{ui.url}/messages/{id}")
    page.context.clear_cookies()
    page.get_by_role("button", name="Resend").click()  # a plain form POST
    expect(page.locator("#session-expired")).to_have_text(EXPIRED)
    sign_in_here(page)
    expect(page).to_have_url(f"{ui.url}/messages/{id}")
    expect(page.get_by_role("heading", name="resend me")).to_be_visible()


def test_a_dashboard_left_open_signs_in_back_to_the_dashboard(ui: Ui, page: Page) -> None:
    ui.sign_in(page, "admin")
    page.context.clear_cookies()  # the next poll of /ui/dashboard/live has no session
    expect(page.locator("#session-expired")).to_have_text(EXPIRED)
    sign_in_here(page)
    expect(page).to_have_url(f"{ui.url}/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("link[rel=stylesheet]")).to_have_count(1)  # a page, not a fragment


def test_a_first_visit_is_not_told_its_session_expired(ui: Ui, page: Page) -> None:
    page.goto(f"{ui.url}/messages")
    expect(page).to_have_url(f"{ui.url}/login?next=/ui/messages")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#session-expired")).to_have_count(0)
    # Another site's page is never where the sign-in leads: only a path of this UI.
    answer = httpx.post(f"{ui.url}/relays/default/test", verify=TLS, headers={
        "HX-Request": "true", "HX-Current-URL": "https://evil.example/ui/relays"})
    assert answer.headers["HX-Redirect"] == "/ui/login?expired=1&next=/ui/"
    answer = httpx.post(f"{ui.url}/messages/x/resend", verify=TLS,
                        headers={"Referer": "https://evil.example/ui/x"})
    assert answer.headers["location"] == "/ui/login?expired=1&next=/ui/"
