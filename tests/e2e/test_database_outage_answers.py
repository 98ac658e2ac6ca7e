"""While PostgreSQL is stopped, the API answers 503 `database_unavailable` with
Retry-After, saying nothing was stored; retried with the same Idempotency-Key once it
is back, the request makes its one message. A real `outbox serve` on a PostgreSQL
cluster of the test's own (tests/pgcluster.py), really stopped and started."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from outbox.errors import DatabaseUnavailable
from tests.e2e.support import relay_for
from tests.pgcluster import PgCluster
from tests.processes import OutboxProcess, base_config, wait_until
from tests.smtpd import ScriptedServer

BODY = {"from": "shop@example.test", "to": ["ann@example.test"], "subject": "Hello",
        "text": "Hi"}


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    with PgCluster.create() as cluster:
        yield cluster


def _submit(api: httpx.Client, key: str) -> httpx.Response:
    return api.post("/v1/messages", json=BODY, headers={"Idempotency-Key": key})


def _assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == str(DatabaseUnavailable.retry_after)
    error = answer.json()["error"]
    assert error["code"] == "database_unavailable"
    assert "nothing was stored" in error["message"]
    assert "\n" not in error["message"] and "Error" not in error["message"]  # no driver text


def _assert_the_ui_says_so(api: httpx.Client) -> None:
    """A sign-in while the database is down: a 503 page in plain words. Its error page
    looked the session up in the database again, failed there too and answered a bare
    500 with a traceback."""
    form = api.get("/ui/login")
    assert form.status_code == 200, form.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None, form.text
    answer = api.post("/ui/login", data={"name": "ann", "password": "pw",
                                         "csrf_token": token.group(1)})
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == str(DatabaseUnavailable.retry_after)
    assert "Outbox cannot reach its database right now: nothing was done." in answer.text
    assert "asyncpg" not in answer.text and "Traceback" not in answer.text


def test_a_stopped_postgresql_is_a_503_and_the_retry_queues_once(
        tmp_path: Path, own_cluster: PgCluster, launch: Any) -> None:
    url = own_cluster.create_database("outbox")
    with ScriptedServer() as sink:
        outbox: OutboxProcess = launch(base_config(tmp_path, url, [relay_for(sink)]))
        with outbox.client() as api:
            first = _submit(api, "before-the-outage")
            assert first.status_code == 202
            own_cluster.stop()
            _assert_unavailable(_submit(api, "during-the-outage"))
            _assert_unavailable(api.get(f"/v1/messages/{first.json()['id']}"))
            _assert_the_ui_says_so(api)
            own_cluster.start()
            answers: list[httpx.Response] = []

            def queued() -> bool:
                answers.append(_submit(api, "during-the-outage"))
                return answers[-1].status_code != 503

            wait_until(queued, timeout=60, interval=0.5, message="a 202 once PostgreSQL is back")
            for answer in answers[:-1]:
                _assert_unavailable(answer)
            assert answers[-1].status_code == 202, answers[-1].text  # new: nothing was stored
            listed = api.get("/v1/messages", params={"limit": 10}).json()["messages"]
    assert len(listed) == 2
