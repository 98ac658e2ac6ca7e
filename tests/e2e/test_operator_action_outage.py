"""A retry or cancel that PostgreSQL stored before it stopped is never answered "nothing
was stored": the routes wrote the change, then read the message back for the answer,
and a database lost in between made the read-back's 503 claim the change was not made.
Now the answer is the message as the change left it (found by a stranger pass).

A real `outbox serve` on a PostgreSQL cluster of the test's own (tests/pgcluster.py),
reached through a relay that stops passing on Outbox's statements the moment the
change's transaction has committed; the cluster is then really stopped, so the
read-back meets a server that is gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.support import relay_for
from tests.pgcluster import PgCluster
from tests.pgfreeze import (
    INTERNAL_DOMAINS,
    FreezeAfterCommit,
    fails_once,
    freezable_cluster,
    one_held_one_failed,
    relayed,
    while_the_database_goes,
)
from tests.processes import OutboxProcess, base_config, wait_until
from tests.smtpd import ScriptedServer


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    with freezable_cluster() as cluster:
        yield cluster


def _act_while_the_database_goes(api: httpx.Client, cluster: PgCluster,
                                 relay: FreezeAfterCommit, path: str,
                                 marker: bytes) -> httpx.Response:
    """POST `path`; once the change it makes has committed, stop the cluster (the
    answer is still being prepared), and return the answer."""
    return while_the_database_goes(cluster, relay, marker, lambda: api.post(path))


def _assert_done(answer: httpx.Response, status: str) -> None:
    """200 with the message as the change left it, not a 503 saying nothing was done;
    no events (their read failed), as the route's description says."""
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["events"]) == (status, [])


def test_a_retry_and_a_cancel_stored_before_postgresql_stopped_are_answered_done(
        tmp_path: Path, own_cluster: PgCluster, launch: Any) -> None:
    url = own_cluster.create_database("outbox")
    with (ScriptedServer(script=[fails_once()]) as sink,
          FreezeAfterCommit(own_cluster.port) as relay):
        config = base_config(tmp_path, relayed(url, own_cluster, relay), [relay_for(sink)],
                             internal_domains=INTERNAL_DOMAINS)
        outbox: OutboxProcess = launch(config)
        with outbox.client() as api:
            held, failed = one_held_one_failed(api)

            cancelled = _act_while_the_database_goes(
                api, own_cluster, relay, f"/v1/messages/{held}/cancel", b"cancelled")
            wait_until(lambda: api.get(f"/v1/messages/{held}").status_code == 200,
                       timeout=60, interval=0.5, message="PostgreSQL back")
            assert api.get(f"/v1/messages/{held}").json()["status"] == "cancelled"  # stored
            _assert_done(cancelled, "cancelled")

            retried = _act_while_the_database_goes(
                api, own_cluster, relay, f"/v1/messages/{failed}/retry", b"retry requested")
            _assert_done(retried, "queued")
            # It was stored: the retry goes out once PostgreSQL is back (the 550 was once).
            wait_until(lambda: api.get(f"/v1/messages/{failed}").json().get("status")
                       == "sent", timeout=60, interval=0.5, message="the retried message sent")
    assert [m.rcpt_tos for m in sink.messages] == [("gone@example.test",)]
