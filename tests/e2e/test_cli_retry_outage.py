"""`outbox queue retry` stored just before PostgreSQL went says so: the retry is done,
and only whether a relay's back-off holds the message could not be checked. It read the
relays' back-offs after the retry and answered the lost database with "nothing was
stored" and a failed exit, so an operator would retry again (left by cc03c45, the API's
fix). `outbox queue cancel` reads nothing after its change: it answers as the cancel
left the message.

A real `outbox serve` (to fail a message) on a PostgreSQL cluster of the test's own; the
CLI reaches the cluster through a relay that stops passing its statements the moment its
change has committed (tests/pgfreeze.py); the cluster is then really stopped."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    status,
    while_the_database_goes,
)
from tests.processes import OutboxProcess, base_config, wait_until, write_config
from tests.smtpd import ScriptedServer
from tests.zygote import run as fork_run

UNCHECKED = ("warning: the retry is stored, but whether a relay backing off holds it back "
             "could not be checked (the database is unavailable right now); run `outbox "
             "relay ls` once it is back")


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    with freezable_cluster() as cluster:
        yield cluster


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    return fork_run([*args, "--config", str(config)], env, config.parent, timeout=90)


def test_a_cli_retry_and_cancel_stored_before_postgresql_stopped_say_they_are_done(
        tmp_path: Path, own_cluster: PgCluster, launch: Any) -> None:
    url = own_cluster.create_database("outbox")
    with (ScriptedServer(script=[fails_once()]) as sink,
          FreezeAfterCommit(own_cluster.port) as relay):
        config = base_config(tmp_path, url, [relay_for(sink)],
                             internal_domains=INTERNAL_DOMAINS)
        outbox: OutboxProcess = launch(config)  # straight to the cluster: never frozen
        cli_config = write_config(tmp_path / "cli.toml", {
            **config, "database": {"url": relayed(url, own_cluster, relay)}})
        with outbox.client() as api:
            held, failed = one_held_one_failed(api)

            cancelled = while_the_database_goes(own_cluster, relay, b"cancelled",
                                                lambda: _cli(cli_config, "queue", "cancel", held))
            assert (cancelled.returncode, cancelled.stdout, cancelled.stderr) == (
                0, f"{held} cancelled\n", "")
            wait_until(lambda: status(api, held) is not None, timeout=60, interval=0.5,
                       message="PostgreSQL back")
            assert status(api, held) == "cancelled"

            retried = while_the_database_goes(own_cluster, relay, b"retry requested",
                                              lambda: _cli(cli_config, "queue", "retry", failed))
            assert retried.returncode == 0, retried.stderr
            assert retried.stdout == f"{failed} queued\n"
            assert retried.stderr.strip() == UNCHECKED
            # It was stored: the retry goes out once PostgreSQL is back (the 550 was once).
            wait_until(lambda: status(api, failed) == "sent", timeout=60, interval=0.5,
                       message="the retried message sent")
    assert [m.rcpt_tos for m in sink.messages] == [("gone@example.test",)]
