"""Relay authentication end to end (issue 6): a real `outbox serve`, an aiosmtpd
relay (PLAIN/LOGIN or XOAUTH2) and a real HTTP token endpoint, all on loopback,
on SQLite and PostgreSQL.

- A wrong password: the relay needs attention, its mail is held with no attempt
  counted; `outbox relay set-credentials` releases it and all is delivered.
- OAuth2: delivered with XOAUTH2; a dead refresh token holds the mail; new
  credentials through `PUT /v1/relays/{name}/credentials` release it.
- API keys made at run time: hashed, scoped, revocable.
(The token endpoint with a clock 10 minutes off is in tests/integration/test_relay_gate.py.)
After each, no secret appears in the logs, transcripts, events, API responses
or the raw database (checked byte-wise: the SQLite file and its WAL, or a
pg_dump of the PostgreSQL database).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from outbox.delivery.transcript import secret_forms
from tests.e2e.conftest import Starter
from tests.oauth_smtpd import (
    CLIENT_ID,
    CLIENT_SECRET,
    MAILBOX,
    Authority,
    TokenEndpoint,
    xoauth2_server,
)
from tests.processes import API_KEY, OUTBOX, OutboxProcess, wait_until
from tests.smtpd import ScriptedServer

GOOD = "right-Pa55word-e2e"
WRONG = "wrong-Pa55word-e2e"
ADMIN_KEY = "ob_admin_e2e_5Kq9XzW2"
FIRST_TOKEN, NEW_TOKEN = "rt-first-e2e-Qm3", "rt-reauthorized-e2e-Vb7"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Api:
    """An HTTP client that keeps every response body, for the leak check."""

    def __init__(self, outbox: OutboxProcess) -> None:
        self.outbox = outbox
        self.bodies: list[str] = []

    def call(self, method: str, path: str, key: str = API_KEY, **kwargs: Any) -> httpx.Response:
        with self.outbox.client(key) as client:
            response = client.request(method, path, **kwargs)
        self.bodies.append(response.text)
        return response

    def submit(self, n: int = 1) -> list[str]:
        ids = []
        for i in range(n):
            response = self.call("POST", "/v1/messages", json={
                "from": "app@example.test", "to": f"rcpt{i}@example.test", "subject": "hi",
                "text": "hello"})
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        return ids

    def message(self, id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/messages/{id}").json())

    def wait(self, ids: Iterable[str], status: str) -> list[dict[str, Any]]:
        def reached() -> list[dict[str, Any]] | None:
            found = [self.message(id) for id in ids]
            return found if all(m["status"] == status for m in found) else None

        return list(wait_until(reached, timeout=30, message=f"messages to be {status}"))

    def relay(self, key: str = ADMIN_KEY) -> dict[str, Any]:
        response = self.call("GET", "/v1/relays", key)
        assert response.status_code == 200, response.text
        return dict(response.json()["relays"][0])

    def transcripts(self, ids: Iterable[str]) -> None:
        for id in ids:
            self.call("GET", f"/v1/messages/{id}/attempts")


def admin_keys() -> dict[str, Any]:
    return {"api_keys": [{"name": "app", "key": API_KEY, "scopes": ["send", "read"]},
                         {"name": "ops", "key": ADMIN_KEY, "scopes": ["admin"]}]}


def key_file(tmp_path: Path) -> dict[str, str]:
    return {"key_file": str(tmp_path / "secret.key")}


def cli(outbox: OutboxProcess, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OUTBOX, *args, "--config", str(outbox.config_path)], input=stdin,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **outbox.env})


def database_bytes(outbox: OutboxProcess) -> bytes:
    """The raw database: SQLite's file and WAL, or every row PostgreSQL holds."""
    url = outbox.config["database"]["url"]
    if url.startswith("sqlite:"):
        path = Path(url.split(":///", 1)[1])
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*")
                        if p.is_file() and not p.name.endswith(".key"))
    dump = subprocess.run(["pg_dump", "--data-only", url], capture_output=True, check=True,
                          timeout=60)
    return dump.stdout


def assert_never_leaked(secrets: Iterable[str], outbox: OutboxProcess, api: Api,
                        *other_output: str) -> None:
    texts = {"log": outbox.log_path.read_text(), "stderr": outbox.stderr_text(),
             "api": "\n".join(api.bodies), "cli": "\n".join(other_output)}
    raw = database_bytes(outbox)
    assert raw  # the database was read
    for secret in {s for s in secrets if s}:
        for where, text in texts.items():
            assert secret not in text, f"a secret leaked into the {where}"
        assert secret.encode() not in raw, "a secret is in the raw database"


@pytest.fixture
def plain_relay() -> Iterator[ScriptedServer]:
    with ScriptedServer(auth=(MAILBOX, GOOD)) as server:
        yield server


def test_a_wrong_password_holds_the_mail_until_set_credentials_delivers_all(
        start_outbox: Starter, plain_relay: ScriptedServer, tmp_path: Path) -> None:
    relay = {"name": "default", "host": "127.0.0.1", "port": plain_relay.port,
             "security": "none", "username": MAILBOX, "password": WRONG}
    outbox = start_outbox([relay], auth=admin_keys(), secrets=key_file(tmp_path))
    api = Api(outbox)
    ids = api.submit(3)

    held = api.wait(ids, "held")

    assert [m["attempts"] for m in held] == [0, 0, 0]
    assert all(r["status"] == "pending" for m in held for r in m["recipients"])
    alerts = [e for m in held for e in m["events"] if e["type"] == "alert"]
    assert alerts and any(e["reply_code"] == 535 and "app password" in e["guidance"]
                          for e in alerts)
    state = api.relay()
    assert (state["state"], state["auth"], state["credentials"]) == (
        "needs_attention", "password", "config")
    assert state["reason"].startswith("535 5.7.8")
    assert "MFA" in state["guidance"]

    done = cli(outbox, "relay", "set-credentials", "default", "--password-stdin",
               stdin=GOOD + "\n")

    assert done.returncode == 0, done.stderr
    assert "3 held message(s) released" in done.stdout
    sent = api.wait(ids, "sent")
    assert [m["attempts"] for m in sent] == [1, 1, 1]
    assert len(plain_relay.messages) == 3
    state = api.relay()
    assert (state["state"], state["credentials"]) == ("ok", "stored")
    api.transcripts(ids)
    assert_never_leaked([*secret_forms(MAILBOX, GOOD), *secret_forms(MAILBOX, WRONG), ADMIN_KEY],
                        outbox, api, done.stdout, done.stderr)


@pytest.fixture
def provider() -> Iterator[tuple[Authority, TokenEndpoint, ScriptedServer]]:
    authority = Authority(refresh_tokens={FIRST_TOKEN})
    with TokenEndpoint(authority) as endpoint, xoauth2_server(authority) as server:
        yield authority, endpoint, server


def oauth_relay(tmp_path: Path, endpoint: TokenEndpoint, server: ScriptedServer) -> dict[
        str, Any]:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    return {"name": "default", "host": "127.0.0.1", "port": server.port, "security": "none",
            "username": MAILBOX,
            "oauth2": {"token_url": endpoint.url, "client_id": CLIENT_ID,
                       "client_secret": f"file:{secret_file}", "refresh_token": FIRST_TOKEN}}


def test_oauth_delivers_and_a_dead_refresh_token_holds_until_new_credentials_release_it(
        start_outbox: Starter, provider: tuple[Authority, TokenEndpoint, ScriptedServer],
        tmp_path: Path) -> None:
    authority, endpoint, server = provider
    outbox = start_outbox([oauth_relay(tmp_path, endpoint, server)], auth=admin_keys(),
                          secrets=key_file(tmp_path), delivery={"messages_per_connection": 1})
    api = Api(outbox)
    (first,) = api.submit()
    api.wait([first], "sent")
    assert server.connections[0].authenticated_as == MAILBOX

    authority.revoke_all()  # the grant is gone: the cached token and the refresh token
    ids = api.submit(2)
    held = api.wait(ids, "held")

    assert [m["attempts"] for m in held] == [0, 0]
    state = api.relay()
    assert (state["state"], state["auth"]) == ("needs_attention", "oauth2")
    assert "invalid_grant" in state["reason"]
    assert "OAuth2 consent" in state["guidance"]
    assert any(e["type"] == "alert" and "token refresh failed" in (e["guidance"] or "").lower()
               for m in held for e in m["events"])

    authority.refresh_tokens.add(NEW_TOKEN)
    response = api.call("PUT", "/v1/relays/default/credentials", ADMIN_KEY,
                        json={"oauth2": {"refresh_token": NEW_TOKEN}})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["released"], body["relay"]["state"], body["relay"]["credentials"]) == (
        2, "ok", "stored")
    api.wait(ids, "sent")
    assert len(server.messages) == 3
    api.transcripts([first, *ids])
    assert_never_leaked(authority.secrets() | {ADMIN_KEY}, outbox, api)


@SQLITE_ONLY
def test_api_keys_made_at_run_time_are_hashed_scoped_and_revocable(
        start_outbox: Starter, closed_relay: dict[str, Any]) -> None:
    outbox = start_outbox([closed_relay], auth=admin_keys())
    api = Api(outbox)

    made = api.call("POST", "/v1/keys", ADMIN_KEY, json={"name": "reader", "scopes": ["read"]})
    assert made.status_code == 201, made.text
    reader = made.json()["key"]
    api.bodies.remove(made.text)  # the one response that shows the key, by design
    sender = api.call("POST", "/v1/keys", ADMIN_KEY, json={"name": "ci"})
    ci = sender.json()["key"]
    api.bodies.remove(sender.text)

    assert api.call("GET", "/v1/messages", reader).status_code == 200
    assert api.call("POST", "/v1/messages", reader, json={}).status_code == 403
    assert api.call("GET", "/v1/relays", reader).status_code == 403
    assert api.call("GET", "/v1/relays", API_KEY).status_code == 403  # config keys too
    ids = [api.call("POST", "/v1/messages", ci, json={
        "from": "app@example.test", "to": "x@example.test", "text": "hi"}).json()["id"]]
    listed = api.call("GET", "/v1/keys", ADMIN_KEY).json()["keys"]
    assert [(k["name"], k["scopes"], k["revoked_at"]) for k in listed] == [
        ("ci", ["send", "read"], None), ("reader", ["read"], None)]

    assert api.call("DELETE", "/v1/keys/ci", ADMIN_KEY).status_code == 204
    assert api.call("GET", "/v1/messages", ci).status_code == 401
    assert api.call("DELETE", "/v1/keys/ci", ADMIN_KEY).status_code == 404
    assert api.call("GET", "/v1/messages", API_KEY).status_code == 200  # config keys still work
    api.transcripts(ids)
    assert_never_leaked([reader, ci, ADMIN_KEY, API_KEY], outbox, api)
