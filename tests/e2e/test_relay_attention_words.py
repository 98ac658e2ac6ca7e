"""A relay marked needs_attention without a login tried is not said to have failed one
(a stranger pass).

Three relays of a real `outbox serve` get the mark with no login sent: `nologin` has
none configured and refuses MAIL with 530, `noauth` has a password but offers no AUTH,
`oauth`'s token endpoint refuses its refresh token. The alert said "its login failed
(...)" for each, the held mail's alert event "its login failed, so all its mail is held
until `outbox relay set-credentials`", and mail submitted afterwards "the last login to
relay noauth failed". Now each says what happened, with the next step of the mark's
guidance. On both backends."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Starter
from tests.oauth_smtpd import (
    CLIENT_ID,
    CLIENT_SECRET,
    MAILBOX,
    Authority,
    TokenEndpoint,
    xoauth2_server,
)
from tests.smtpd import ScriptedServer, reply

LOGIN_NEEDED = "530 5.7.0 Authentication required"


@pytest.fixture
def three_relays() -> Iterator[tuple[list[dict[str, Any]], ScriptedServer]]:
    """The relays' settings, and nologin's server: it defers its first recipient (451 to
    RCPT), so that message waits, unclaimed, when the test makes it refuse MAIL."""
    authority = Authority(refresh_tokens={"rt-good"})
    with ScriptedServer(script=[reply("RCPT", "451 4.3.0 try later")]) as nologin, \
            ScriptedServer() as noauth, TokenEndpoint(authority) as endpoint, \
            xoauth2_server(authority) as oauth:
        yield [
            {"name": "nologin", "host": "127.0.0.1", "port": nologin.port, "security": "none"},
            {"name": "noauth", "host": "127.0.0.1", "port": noauth.port, "security": "none",
             "username": "mailer", "password": "correct-horse"},
            {"name": "oauth", "host": "127.0.0.1", "port": oauth.port, "security": "none",
             "username": MAILBOX, "oauth2": {"token_url": endpoint.url, "client_id": CLIENT_ID,
                                             "client_secret": CLIENT_SECRET,
                                             "refresh_token": "rt-revoked"}}], nologin


def submit(client: httpx.Client, relay: str, n: int) -> str:
    answer = client.post("/v1/messages", json={"from": "app@example.test",
                                               "to": f"r{n}@{relay}.test", "subject": "s",
                                               "text": "hello"})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def wait_for(client: httpx.Client, id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message: dict[str, Any] = client.get(f"/v1/messages/{id}").json()
        if message["status"] == status:
            return message
        time.sleep(0.1)
    raise AssertionError(f"message {id} never {status}: {message['status']}")


def events(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in message["events"] if e["type"] == kind]


def alerts(client: httpx.Client) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = {a["key"]: a["detail"] for a in
                 client.get("/v1/alerts", params={"active": "true"}).json()["alerts"]}
        if all(f"relay.{r}.needs_attention" in found for r in ("nologin", "noauth", "oauth")):
            return found
        time.sleep(0.2)
    raise AssertionError(f"no needs_attention alerts: {found}")


def test_marks_made_without_a_login_say_why_in_alerts_doctor_and_held_mail(
        start_outbox: Starter,
        three_relays: tuple[list[dict[str, Any]], ScriptedServer]) -> None:
    relays, nologin = three_relays
    routes = [{"match": f"{r['name']}.test", "relay": r["name"]} for r in relays]
    process = start_outbox(relays, routes=routes, alerts={"evaluate_every": "1s"},
                           retry={"first_delay": "1h", "max_delay": "1h"})
    with process.client() as client:
        waiting = submit(client, "nologin", 0)
        wait_for(client, waiting, "deferred")
        nologin.set_script(reply("MAIL", LOGIN_NEEDED))
        refused = submit(client, "nologin", 1)
        first = {relay: submit(client, relay, 0) for relay in ("noauth", "oauth")}
        for id in (waiting, refused, *first.values()):
            wait_for(client, id, "held")
        late = wait_for(client, submit(client, "noauth", 1), "held")
        held = wait_for(client, waiting, "held")
        active = alerts(client)
    doctor = {c["name"]: c for c in json.loads(process.cli("doctor", "--json").stdout)["checks"]}

    assert "its login failed" not in json.dumps([active, doctor, late, held])

    assert active["relay.nologin.needs_attention"] == (
        f"it requires a login and none is configured ({LOGIN_NEEDED}); its mail is held")
    assert active["relay.noauth.needs_attention"].startswith(
        "Outbox did not log in, as the relay offers no login method its credentials can use "
        "(the relay offers no AUTH; ")
    assert active["relay.oauth.needs_attention"].startswith(
        "Outbox did not log in, as it got no OAuth2 access token (the token endpoint ")

    # The deferred message the mark held without trying it: its event names the fix.
    (alert,) = events(held, "alert")
    assert alert["detail"].startswith(
        "relay nologin needs attention: it requires a login and none is configured "
        f"({LOGIN_NEEDED}), so all its mail is held (no attempt counted). Next step: Store "
        "the relay's account with `outbox relay set-credentials nologin`")

    # Mail submitted after the mark: not "the last login to relay noauth failed".
    (held_event,) = events(late, "held")
    assert held_event["detail"].startswith(
        "relay noauth needs attention: Outbox did not log in, as the relay offers no login "
        "method its credentials can use")
    assert held_event["guidance"].startswith("Relay does not offer Outbox's login method")

    state = doctor["relay nologin: state"]
    assert state["status"] == "fail"
    assert state["detail"].endswith(
        f": it requires a login and none is configured ({LOGIN_NEEDED}); its mail is held")
    assert "`outbox relay set-credentials NAME`" in state["fix"]
    assert doctor["relay oauth: state"]["detail"].endswith(
        "); its mail is held") and "as it got no OAuth2 access token (the token endpoint " in (
        doctor["relay oauth: state"]["detail"])
