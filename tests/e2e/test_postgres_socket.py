"""PostgreSQL reached over its Unix socket (`postgresql://user@/db?host=/dir`), as the
configuration reference suggests for a server on the same machine and as bench/compare.py
runs it: `outbox serve` at the defaults (two delivery processes, each woken by NOTIFY
over its own socket connection) delivers, `/healthz` is 200, and the CLI shows and uses
the same URL. TCP is what the rest of the suite uses."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from outbox.runtime.children import usable_cores
from tests.e2e.support import healthz, relay_for, submit_many, wait_all_sent
from tests.pg import fresh_database, socket_directory
from tests.processes import OutboxProcess, base_config, write_config
from tests.smtpd import ScriptedServer


@pytest.fixture
def socket_url() -> Iterator[str]:
    with fresh_database("outbox_socket", over_socket=True) as url:
        yield url


def test_serve_delivers_over_the_unix_socket(socket_url: str, tmp_path: Path) -> None:
    assert usable_cores() >= 2, "this test needs the two cores CI machines have"
    assert "127.0.0.1" not in socket_url and f"host={socket_directory()}" in socket_url
    with ScriptedServer() as sink:
        config = base_config(tmp_path, socket_url, [relay_for(sink)])
        config["delivery"].pop("processes")  # the defaults: delivery processes of its own
        config["delivery"]["poll_interval"] = "1h"  # only a NOTIFY can start a delivery
        path = write_config(tmp_path / "outbox.toml", config)
        serve = OutboxProcess(path, config).start()
        try:
            assert healthz(serve)[0] == 200
            assert len(serve.logged("worker started")) == 2
            submit_many(serve, 40)
            wait_all_sent(socket_url, 40, timeout=60, what="over the socket")
            assert len(sink.messages) == 40
        finally:
            serve.stop(timeout=10)
        shown = subprocess.run([sys.executable, "-m", "outbox", "config", "show",
                                "--config", str(path)],
                               capture_output=True, text=True, check=False)
        assert shown.returncode == 0, shown.stderr
        assert socket_url in shown.stdout
        listed = subprocess.run([sys.executable, "-m", "outbox", "queue", "ls", "--status",
                                 "sent", "--config", str(path)],
                                capture_output=True, text=True, check=False)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count("sent") >= 40
