"""Observability against a real `outbox serve` and a real SMTP server, on SQLite and
PostgreSQL: /metrics while a batch drains, log lines that carry the message, relay
and request ids (and no secret), the support bundle, and an alert that is raised
when a relay answers 451 to everything and cleared when it recovers."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from outbox.service.alerts import verify
from tests.e2e.support import Samples, scrape, value
from tests.pg import database
from tests.processes import (
    API_KEY,
    OUTBOX,
    READ_ONLY_KEY,
    TLS,
    OutboxProcess,
    base_config,
    wait_until,
    write_config,
)
from tests.smtpd import ScriptedServer, reply
from tests.webhook import WebhookReceiver

RELAY_USER, RELAY_PASSWORD = "outbox-relay", "Relay-s3cret-Pa55"
WEBHOOK_SECRET = "whsec_e2e_4b1d"
BATCH = 20
PENDING = ("queued", "sending", "deferred")
REQUEST_ID = "req-e2e-0001"

def depth(samples: Samples, status: str) -> int:
    return int(value(samples, "outbox_queue_messages", status=status))


def secrets() -> list[bytes]:
    plain = [RELAY_PASSWORD, API_KEY, READ_ONLY_KEY, WEBHOOK_SECRET,
             base64.b64encode(RELAY_PASSWORD.encode()).decode(),
             base64.b64encode(f"\0{RELAY_USER}\0{RELAY_PASSWORD}".encode()).decode()]
    return [s.encode() for s in plain]


# --- a batch through a relay that is busy, then recovers -------------------------------

@dataclass
class Batch:
    outbox: OutboxProcess
    relay: ScriptedServer
    ids: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    echoed_request_id: str = ""
    samples: list[Samples] = field(default_factory=list)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def batch(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    directory = tmp_path_factory.mktemp("observability")
    relay = ScriptedServer(auth=(RELAY_USER, RELAY_PASSWORD),
                           script=[reply("GREETING", "421 4.3.2 Too busy, try later")]).start()
    hooks = WebhookReceiver().start()
    relay_config = {"name": "default", "host": "127.0.0.1", "port": relay.port,
                    "security": "none", "username": RELAY_USER, "password": RELAY_PASSWORD}
    with database(request.param, directory) as url:
        # The relay's back-off is shortened so that the batch goes as soon as the relay
        # is back (the defaults, 10 s doubling to 10 min, are under test in
        # tests/integration/test_relay_governor.py on an injected clock).
        config = base_config(directory, url, [relay_config],
                             retry={"max_attempts": 100},
                             delivery={"relay_backoff_first": "500ms",
                                       "relay_backoff_max": "1s"},
                             alerts={"webhook_url": hooks.url, "webhook_secret": WEBHOOK_SECRET})
        outbox = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
        try:
            yield deliver_batch(Batch(outbox, relay))
        finally:
            outbox.stop(timeout=10)
            relay.stop()
            hooks.stop()


def deliver_batch(batch: Batch) -> Batch:
    """Queue a batch while the relay turns everyone away, then let it recover and
    scrape /metrics until the batch is delivered."""
    with batch.outbox.client() as client:
        for n in range(BATCH):
            headers = {"X-Request-ID": REQUEST_ID} if n == 0 else {}
            response = client.post("/v1/messages", headers=headers, json={
                "from": "shop@example.test", "to": f"user{n}@example.test",
                "subject": f"order {n}", "text": "thanks"})
            assert response.status_code == 202, response.text
            batch.ids.append(response.json()["id"])
            batch.message_ids.append(response.json()["message_id"])
            batch.echoed_request_id = batch.echoed_request_id or \
                response.headers["X-Request-ID"]
    batch.samples.append(scrape(batch.outbox))
    # A 421 greeting is the relay's trouble: it backs off, and its mail waits deferred
    # without spending an attempt (SPEC §2, core/governor.py).
    wait_until(lambda: all(m["status"] == "deferred" for m in listed(batch.outbox)),
               timeout=120, message="every message to be turned away once")
    assert {m["attempts"] for m in listed(batch.outbox)} == {0}
    batch.relay.set_script()

    def drained() -> bool:
        batch.samples.append(scrape(batch.outbox))
        return depth(batch.samples[-1], "sent") == BATCH

    # Mail that waited on the relay goes within a few (shortened) back-offs of its
    # return, not after the 60 s window kept for a probe that never answers.
    wait_until(drained, timeout=30, interval=0.05, message="the batch to be delivered")
    return batch


def listed(outbox: OutboxProcess) -> list[dict[str, Any]]:
    with outbox.client() as client:
        return list(client.get("/v1/messages", params={"limit": 500}).json()["messages"])


def status_of(outbox: OutboxProcess, id: str) -> str:
    with outbox.client() as client:
        return str(client.get(f"/v1/messages/{id}").json()["status"])


def test_metrics_show_the_queue_depth_change_while_a_batch_is_delivered(batch: Batch) -> None:
    pending = [sum(depth(s, status) for status in PENDING) for s in batch.samples]
    sent = [depth(s, "sent") for s in batch.samples]
    assert (pending[0], sent[0]) == (BATCH, 0), "the relay refused: all of it waits"
    assert (pending[-1], sent[-1]) == (0, BATCH)
    assert sent == sorted(sent) and pending == sorted(pending, reverse=True)
    assert [p + s for p, s in zip(pending, sent, strict=True)] == [BATCH] * len(sent)
    assert len(set(pending)) >= 2

    last = scrape(batch.outbox)
    assert value(last, "outbox_deliveries_total", relay="default", result="sent") == BATCH
    assert value(last, "outbox_deliveries_total", relay="default", result="deferred") >= BATCH
    assert value(last, "outbox_attempt_duration_seconds_count", relay="default") >= 2 * BATCH
    assert ("outbox_relay_state", (("relay", "default"),)) in last
    assert value(last, "outbox_oldest_pending_age_seconds") == 0
    assert value(last, "outbox_api_requests_total", method="POST", route="/v1/messages",
                 code="202") == BATCH
    assert value(last, "outbox_api_requests_total", method="GET", route="/metrics",
                 code="200") >= len(batch.samples)


def test_start_up_objects_are_frozen_out_of_full_collections(
        launch: Callable[..., OutboxProcess], tmp_path: Path) -> None:
    """runtime/heap.py: a full collection in serve walks what was made since start-up,
    not the modules and the app (60-150 ms per collection, bench/abuse.py). A real exec:
    the tests' zygote freezes its imports before it forks, which would hide a serve
    that does not freeze its own."""
    config = base_config(tmp_path, f"sqlite:///{tmp_path}/outbox.db", [])
    outbox = launch(config, forked=False)
    # A serve holds 100,000-200,000 objects when its start-up ends.
    assert value(scrape(outbox), "outbox_gc_frozen_objects") > 50_000


def test_log_lines_carry_message_relay_and_request_ids_and_no_secret(batch: Batch) -> None:
    raw = batch.outbox.log_path.read_bytes()
    for secret in secrets():
        assert secret not in raw, secret
    lines = [json.loads(line) for line in raw.decode().splitlines() if line.startswith("{")]

    for id, message_id in zip(batch.ids, batch.message_ids, strict=True):
        answered = [line for line in lines if line.get("event") == "relay answered"
                    and line.get("message_id") == message_id]
        assert answered, f"no delivery line for {message_id}"
        assert all(line["relay"] == "default" and line["message"] == id
                   and isinstance(line["attempt"], int) for line in answered)
        # Each attempt's time, which doctor's waiting warning sends the operator to.
        assert all(isinstance(line["seconds"], int | float) for line in answered)
        assert answered[-1]["results"] == {"sent": 1}
        # Turned away by the relay's 421, or held back while the relay backed off after it.
        assert any(key in ("smtp.421", "relay_backing_off") for line in answered[:-1]
                   for key in line.get("guidance", []))
    assert any("smtp.421" in line.get("guidance", []) for line in lines
               if line.get("event") == "relay answered")

    assert batch.echoed_request_id == REQUEST_ID
    accepted = [line for line in lines if line.get("event") == "message accepted"]
    assert len(accepted) == BATCH
    assert all(len(line.get("request_id", "")) > 0 for line in accepted)
    (first,) = [line for line in accepted if line["message"] == batch.ids[0]]
    assert first["request_id"] == REQUEST_ID
    assert len({line["request_id"] for line in accepted}) == BATCH


def test_support_bundle_holds_each_item_and_no_secret(batch: Batch, tmp_path: Path) -> None:
    output = tmp_path / "support.zip"
    result = subprocess.run([*OUTBOX, "support-bundle", "-o", str(output), "--config",
                             str(batch.outbox.config_path)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    members = ["README.txt", "config.toml", "logs.txt", "messages.json", "queue.json",
               "versions.json", "doctor.json"]
    assert result.stdout.splitlines()[0].startswith(f"wrote {output} (")
    for name in members:
        assert f"  {name}" in result.stdout

    raw = output.read_bytes()
    with zipfile.ZipFile(io.BytesIO(raw)) as bundle:
        assert bundle.namelist() == members
        contents = {name: bundle.read(name) for name in members}
    for secret in secrets():
        assert secret not in raw
        for name, data in contents.items():
            assert secret not in data, (name, secret)

    assert b'password = "***"' in contents["config.toml"]
    assert b"relay answered" in contents["logs.txt"]
    listed = {m["id"] for m in json.loads(contents["messages.json"])["messages"]}
    assert set(batch.ids) <= listed
    assert json.loads(contents["queue.json"])["by_status"]["sent"] >= BATCH
    assert json.loads(contents["versions.json"])["outbox"]
    checks = {c["name"]: c for c in json.loads(contents["doctor.json"])["checks"]}
    assert checks["relay default: auth"]["status"] == "pass"
    assert checks["database schema"]["status"] == "pass"


# --- an alert while a relay answers 451 to everything ----------------------------------

def active_alerts(outbox: OutboxProcess, key: str = API_KEY) -> list[dict[str, Any]]:
    with outbox.client(key) as client:
        response = client.get("/v1/alerts", params={"active": "true"})
    assert response.status_code == 200, response.text
    return list(response.json()["alerts"])


def test_an_alert_is_raised_while_a_relay_answers_451_and_cleared_when_it_recovers(
        start_outbox: Any) -> None:
    relay = ScriptedServer(script=[reply("MAIL", "451 4.3.0 Temporary failure, try later")])
    with relay, WebhookReceiver() as hooks:
        outbox = start_outbox(
            [{"name": "default", "host": "127.0.0.1", "port": relay.port, "security": "none"}],
            retry={"first_delay": "100ms", "max_delay": "300ms", "max_attempts": 1000},
            alerts={"webhook_url": hooks.url, "webhook_secret": WEBHOOK_SECRET,
                    "window": "2s", "min_attempts": 3, "failure_ratio": 0.5,
                    "evaluate_every": "200ms", "held_count": 0, "oldest_queued_age": "0s"})
        with outbox.client() as client:
            ids = [client.post("/v1/messages", json={
                "from": "shop@example.test", "to": f"u{n}@example.test", "subject": "s",
                "text": "t"}).json()["id"] for n in range(3)]

        (alert,) = wait_until(lambda: active_alerts(outbox, READ_ONLY_KEY), timeout=60,
                              message="the failure-rate alert")
        assert alert["key"] == "relay.default.failure_rate"
        assert (alert["severity"], alert["active"], alert["cleared_at"]) == (
            "warning", True, None)
        assert alert["title"] == "Relay default keeps failing"
        assert "did not deliver" in alert["detail"] and "deferred" in alert["detail"]
        assert alert["guidance_detail"]["key"] == "relay_failure_rate"
        assert value(scrape(outbox), "outbox_relay_state", relay="default") == 1
        raised = hooks.wait_for(lambda r: r.json["type"] == "alert.raised")
        assert verify(WEBHOOK_SECRET, raised.headers["Outbox-Signature"], raised.body,
                      time.time())
        assert raised.json["alert"]["key"] == "relay.default.failure_rate"

        relay.set_script()  # the relay recovers
        wait_until(lambda: all(status_of(outbox, id) == "sent" for id in ids), timeout=60,
                   message="delivery")
        wait_until(lambda: not active_alerts(outbox), timeout=60, message="the alert to clear")
        cleared = hooks.wait_for(lambda r: r.json["type"] == "alert.cleared")
        assert verify(WEBHOOK_SECRET, cleared.headers["Outbox-Signature"], cleared.body,
                      time.time())
        with outbox.client() as client:
            (history,) = client.get("/v1/alerts").json()["alerts"]
        assert history["active"] is False and history["cleared_at"]
        assert [r.json["type"] for r in hooks.requests()] == ["alert.raised", "alert.cleared"]
        assert httpx.get(f"{outbox.base_url}/v1/alerts", verify=TLS).status_code == 401
        assert len(relay.messages) == 3
