"""Issue 17: during a database outage every API request that fails leaves one log
line naming the cause (throttled: at most 20 a second, then a count).

PostgreSQL in a cluster of the test's own (tests/pgcluster.py), stopped for 10 s
under a running `outbox serve`; requests are paced (5 a second) so that the
throttle never has to hold one back and each failing request can be matched
with its line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.pgcluster import PgCluster
from tests.processes import TLS, OutboxProcess, base_config, free_port, wait_until

OUTAGE = 10.0


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    with PgCluster.create() as cluster:
        yield cluster


@pytest.mark.long(19)
def test_each_request_failing_in_a_database_outage_is_logged_with_its_cause(
        tmp_path: Path, own_cluster: PgCluster, launch: Any) -> None:
    url = own_cluster.create_database("outbox")
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}
    outbox: OutboxProcess = launch(base_config(tmp_path, url, [relay]))
    failed: list[tuple[str, int]] = []
    answered = 0
    with outbox.client() as client:
        own_cluster.stop()
        try:
            deadline = time.monotonic() + OUTAGE
            n = 0
            while time.monotonic() < deadline:
                n += 1
                if n % 2:
                    response = client.post("/v1/messages", json={
                        "from": "a@example.test", "to": f"r{n}@example.test", "text": "x"})
                else:
                    response = client.get("/v1/messages")
                answered += 1
                if response.status_code >= 500:
                    failed.append((response.request.method, response.status_code))
                    assert response.json()["error"]["code"]  # the documented shape
                time.sleep(0.2)
        finally:
            own_cluster.start()
    wait_until(lambda: httpx.get(f"{outbox.base_url}/healthz", timeout=5,
                                 verify=TLS).status_code == 200,
               timeout=60, message="/healthz 200 after the outage")
    lines = [json.loads(line) for line in outbox.log_path.read_text().splitlines()
             if '"request failed"' in line]
    print(f"\n{answered} requests in a {OUTAGE:.0f} s outage, {len(failed)} answered 5xx, "
          f"{len(lines)} 'request failed' lines; first: {lines[0] if lines else None}")
    assert len(failed) >= answered - 2  # each request failed (bar one at either edge)
    assert len(lines) == len(failed)
    assert all(line["level"] == "error" and line["cause"] and line["path"].startswith("/v1/")
               for line in lines)
    assert all("database" in line["cause"].lower() for line in lines)
    assert not any("suppressed" in line for line in lines)
