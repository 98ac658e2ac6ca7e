"""Helpers shared by the fault tests: fill the queue in parallel over HTTP, and read
the queue straight from the database (SQL), which works while no process runs."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from outbox.api.batch import MAX_BATCH
from tests.dbsql import sql
from tests.processes import TLS, OutboxProcess, wait_until
from tests.smtpd import ScriptedServer

FINAL = {"sent", "failed", "partially_sent", "cancelled"}
REQUEUED = {"queued", "deferred", "sent"}


def relay_for(server: ScriptedServer, **extra: Any) -> dict[str, Any]:
    return {"name": "default", "host": "127.0.0.1", "port": server.port, "security": "none",
            **extra}


def bulk_message(n: int, prefix: str = "bulk") -> dict[str, str]:
    """The `n`th of `submit_many`'s small messages."""
    return {"from": "bulk@example.test", "to": f"{prefix}{n}@example.test",
            "subject": f"{prefix} {n}", "text": "x" * 200}


def submit_many(outbox: OutboxProcess, count: int, *, threads: int = 8,
                prefix: str = "bulk") -> dict[str, str]:
    """id → Message-ID of `count` new small messages, posted by `threads` clients."""

    def post_range(start: int) -> dict[str, str]:
        accepted = {}
        with outbox.client() as client:
            for n in range(start, count, threads):
                response = client.post("/v1/messages", json=bulk_message(n, prefix))
                assert response.status_code == 202, response.text
                body = response.json()
                accepted[body["id"]] = body["message_id"]
        return accepted

    submitted: dict[str, str] = {}
    with ThreadPoolExecutor(threads) as pool:
        for part in pool.map(post_range, range(threads)):
            submitted.update(part)
    assert len(submitted) == count
    return submitted


def submit_in_batches(outbox: OutboxProcess, count: int) -> dict[str, str]:
    """`submit_many`'s messages by POST /v1/messages/batch, for a backlog where single
    submits are not under test: 600 single POSTs cost 1.6 s of CPU (client and serve),
    600 in batches 0.6 s."""
    submitted: dict[str, str] = {}
    with outbox.client() as client:
        for start in range(0, count, MAX_BATCH):
            response = client.post("/v1/messages/batch", json={"messages": [
                bulk_message(n) for n in range(start, min(start + MAX_BATCH, count))]})
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            assert all("id" in result for result in results), results  # none refused
            submitted.update({result["id"]: result["message_id"] for result in results})
    assert len(submitted) == count
    return submitted


def fill_queue(config: dict[str, Any], count: int) -> dict[str, str]:
    """id → Message-ID of `count` small messages queued through the service while
    no worker runs (the same submit as the API's, without HTTP); creates the schema."""
    from outbox.config import Settings
    from outbox.core.compose import Submission
    from outbox.service import Outbox

    async def fill() -> dict[str, str]:
        settings = Settings(**{k: v for k, v in config.items() if k != "logging"})
        outbox = await Outbox.open(settings)
        queued: dict[str, str] = {}
        try:
            for start in range(0, count, 100):
                done = await asyncio.gather(*(outbox.messages.submit(Submission(
                    sender="bulk@example.test", to=f"fill{n}@example.test", subject=f"n{n}",
                    text="x" * 200)) for n in range(start, min(start + 100, count))))
                queued.update({s.message.id: s.message.message_id for s in done})
        finally:
            await outbox.close()
        return queued

    return asyncio.run(fill())


def get_message(outbox: OutboxProcess, id: str) -> dict[str, Any]:
    with outbox.client() as client:
        response = client.get(f"/v1/messages/{id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def statuses(url: str) -> dict[str, str]:
    return {id: status for id, status in sql(url, "SELECT id, status FROM messages")}


def status_counts(url: str) -> Counter[str]:
    return Counter(statuses(url).values())


def claims(url: str) -> dict[str, tuple[str, str]]:
    """id → (owner, claim token) of every message in `sending`."""
    rows = sql(url, "SELECT id, claimed_by, claim_token FROM messages WHERE status = 'sending'")
    return {id: (owner, token) for id, owner, token in rows}


def recovered(url: str, in_flight: dict[str, tuple[str, str]]) -> set[str]:
    """Of the messages a dead process had claimed (`claims()` at the kill), those no
    longer under its claim: requeued, sent, or claimed again under a new token."""
    now = {id: (status, token) for id, status, token in
           sql(url, "SELECT id, status, claim_token FROM messages")}
    return {id for id, (_, old_token) in in_flight.items()
            if now[id][0] in REQUEUED or now[id][1] != old_token}


def events(url: str, type: str) -> list[tuple[str, str]]:
    """(message id, detail) of every event of this type."""
    return [(id, detail or "") for id, detail in
            sql(url, f"SELECT message_id, detail FROM events WHERE type = '{type}'")]


def attempts(url: str) -> dict[str, int]:
    return {id: int(n) for id, n in sql(url, "SELECT id, attempts FROM messages")}


def wait_all_sent(url: str, count: int, timeout: float, what: str = "") -> None:
    def done() -> bool:
        counts = status_counts(url)
        return counts.get("sent", 0) == count

    try:
        wait_until(done, timeout=timeout, interval=0.5, message=f"all {count} sent {what}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; statuses now: {dict(status_counts(url))}") from None


def healthz(outbox: OutboxProcess) -> tuple[int, dict[str, Any]]:
    """(status code, body) of /healthz; (0, {}) when the process does not answer."""
    try:
        response = httpx.get(f"{outbox.base_url}/healthz", timeout=5, verify=TLS)
    except httpx.HTTPError:
        return 0, {}
    try:
        body = response.json()
    except json.JSONDecodeError:
        body = {"text": response.text}
    return response.status_code, dict(body)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(outbox: OutboxProcess) -> Samples:
    """/metrics as {(sample name, sorted labels): value}."""
    text = httpx.get(f"{outbox.base_url}/metrics", timeout=10, verify=TLS).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class HealthRecorder:
    """Polls /healthz from a thread and keeps every answer: (monotonic time, code, body)."""

    def __init__(self, outbox: OutboxProcess, interval: float = 0.1) -> None:
        import threading

        self.outbox = outbox
        self.interval = interval
        self.answers: list[tuple[float, int, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            code, body = healthz(self.outbox)
            self.answers.append((time.monotonic(), code, body))
            self._stop.wait(self.interval)

    def start(self) -> HealthRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def unavailable(self) -> list[dict[str, Any]]:
        return [body for _, code, body in self.answers if code == 503]

    def summary(self) -> str:
        codes = [code for _, code, _ in self.answers]
        runs: list[str] = []
        for code in codes:
            if not runs or not runs[-1].startswith(f"{code}x"):
                runs.append(f"{code}x1")
            else:
                runs[-1] = f"{code}x{int(runs[-1].split('x')[1]) + 1}"
        return " ".join(runs)
