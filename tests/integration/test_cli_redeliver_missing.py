"""`outbox webhooks redeliver` of an event that does not exist says `no event evt_N`,
with or without --endpoint, exiting as any other thing not found does (`outbox status`
of an unknown id). Real processes on a SQLite file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from tests.created import create_database
from tests.processes import write_config
from tests.zygote import run as fork_run


def outbox(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    return fork_run([*args, "--config", str(config)], env, config.parent)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_missing_event_is_not_found_with_or_without_an_endpoint(tmp_path: Path) -> None:
    config = write_config(tmp_path / "outbox.toml", {
        "database": {"url": "sqlite:///./outbox.db"},
        "secrets": {"key_file": str(tmp_path / "secret.key")},
        "webhooks": {"allowed_networks": ["127.0.0.0/8"]},
        "relays": [{"name": "default", "host": "127.0.0.1", "port": 2525, "security": "none"}],
    })
    database = create_database(config)
    added = outbox(config, "webhooks", "add", "http://127.0.0.1:9/hook", "--events", "queued")
    assert added.returncode == 0, added.stderr
    endpoint_id = added.stdout.strip().splitlines()[-2]
    unknown_message = outbox(config, "status", "0123456789abcdef")
    assert unknown_message.returncode != 0

    for extra in ((), ("--endpoint", endpoint_id)):
        result = outbox(config, "webhooks", "redeliver", "evt_999", *extra)
        assert error_line(result) == "error: no event evt_999", extra
        assert result.returncode == unknown_message.returncode

    # An event that exists but went to no endpoint (queued before there was one for it).
    removed = outbox(config, "webhooks", "remove", endpoint_id)
    assert removed.returncode == 0, removed.stderr
    sent = outbox(config, "send", "--from", "a@example.test", "--to", "b@example.test",
                  "--text", "hi")
    assert sent.returncode == 0, sent.stderr
    with closing(sqlite3.connect(database)) as conn:
        (event,) = conn.execute("SELECT max(id) FROM events").fetchone()
    went_nowhere = outbox(config, "webhooks", "redeliver", f"evt_{event}")
    assert error_line(went_nowhere) == (f"error: event evt_{event} was not delivered to any "
                                        "endpoint (name the endpoint to deliver it to)")
