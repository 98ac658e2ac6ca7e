"""One-click unsubscribe and DKIM through a real `outbox serve` and a real aiosmtpd
relay: the delivered message carries List-Unsubscribe and List-Unsubscribe-Post and
RSA and Ed25519 DKIM signatures that verify (dkimpy, against the test's keys); a POST
to the link over real HTTP suppresses the recipient."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from outbox.config import DkimKey
from outbox.delivery.dkim import public_record
from tests.processes import API_KEY, TLS, OutboxProcess, base_config, wait_until
from tests.smtpd import ScriptedServer

ADMIN_KEY = "ob_test_admin_key_for_unsub_0001"


@pytest.fixture
def relay() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    server.stop()


def write_keys(directory: Path) -> list[dict[str, str]]:
    keys = []
    for name, key in (("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                      ("ed25519", ed25519.Ed25519PrivateKey.generate())):
        path = directory / f"{name}.pem"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        keys.append({"domain": "shop.example.test", "selector": f"s-{name}",
                     "algorithm": f"{name}-sha256", "private_key": f"file:{path}"})
    return keys


def dnsfunc(keys: list[dict[str, str]]) -> Any:
    records = {f"{k['selector']}._domainkey.{k['domain']}.".encode():
               public_record(DkimKey(**k)).encode() for k in keys}  # type: ignore[arg-type]
    return lambda name, timeout=5: records.get(name)


@pytest.fixture
def outbox(launch: Any, tmp_path: Path, relay: ScriptedServer) -> tuple[OutboxProcess, Any]:
    keys = write_keys(tmp_path)
    config = base_config(
        tmp_path, f"sqlite:///{tmp_path}/outbox.db",
        [{"name": "default", "host": "127.0.0.1", "port": relay.port, "security": "none"}],
        auth={"api_keys": [{"name": "app", "key": API_KEY, "scopes": ["send", "read"]},
                           {"name": "ops", "key": ADMIN_KEY, "scopes": ["admin"]}]},
        dkim={"keys": keys})
    return launch(config), dnsfunc(keys)


def test_unsubscribe_link_and_dkim_signatures(outbox: tuple[OutboxProcess, Any],
                                              relay: ScriptedServer) -> None:
    process, dns = outbox
    with process.client() as client:
        two = client.post("/v1/messages", json={
            "from": "Shop <news@shop.example.test>", "to": ["a@example.org", "b@example.org"],
            "subject": "News", "text": "hi", "list_unsubscribe": True})
        assert two.status_code == 422 and two.json()["error"]["field"] == "list_unsubscribe"
        accepted = client.post("/v1/messages", json={
            "from": "Shop <news@shop.example.test>", "to": "Dana <dana@example.org>",
            "subject": "December news ✓", "text": "Big   news\n", "list_unsubscribe": True})
        assert accepted.status_code == 202, accepted.text
        id = accepted.json()["id"]
        wait_until(lambda: client.get(f"/v1/messages/{id}").json()["status"] == "sent")

    (received,) = [m for m in relay.messages if m.message_id == accepted.json()["message_id"]]
    verifier = dkim.DKIM(received.data)
    algorithms = []
    for index in range(2):
        assert verifier.verify(idx=index, dnsfunc=dns), f"signature {index} verifies"
        algorithms.append(verifier.signature_fields[b"a"])
        assert b"list-unsubscribe" in verifier.signature_fields[b"h"]
    assert sorted(algorithms) == [b"ed25519-sha256", b"rsa-sha256"]

    parsed = email.message_from_bytes(received.data)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(r"<(.+)>", str(parsed["List-Unsubscribe"]))
    assert url is not None and url.group(1).startswith(process.base_url + "/unsubscribe/")

    page = httpx.get(url.group(1), verify=TLS)  # a GET only shows the button
    assert page.status_code == 200 and "dana@example.org" in page.text
    with process.client(ADMIN_KEY) as admin:
        assert admin.get("/v1/suppressions").json()["suppressions"] == []
    forged = httpx.post(url.group(1)[:-3] + "000", content=b"List-Unsubscribe=One-Click",
                        verify=TLS)
    assert forged.status_code == 404

    clicked = httpx.post(url.group(1), content=b"List-Unsubscribe=One-Click",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, verify=TLS)
    assert clicked.status_code == 200, clicked.text
    with process.client(ADMIN_KEY) as admin:
        listed = admin.get("/v1/suppressions").json()["suppressions"]
    assert [(s["address"], s["reason"], s["source_message"]) for s in listed] == [
        ("dana@example.org", "unsubscribe", id)]
    with process.client() as client:
        refused = client.post("/v1/messages", json={
            "from": "news@shop.example.test", "to": "dana@example.org", "text": "again"})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "suppressed"
        events = client.get(f"/v1/messages/{id}").json()["events"]
    assert any(e["type"] == "unsubscribed" and e["recipient"] == "dana@example.org"
               for e in events)
