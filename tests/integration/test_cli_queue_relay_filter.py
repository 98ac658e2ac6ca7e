"""`outbox queue ls --relay NAME` refuses a name that is neither configured nor carried by
any message, as `outbox send --relay` does; a relay removed from the config since its
mail went still lists that mail. Real processes on a SQLite file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.created import create_database
from tests.processes import write_config
from tests.zygote import run as fork_run

RELAY = {"host": "127.0.0.1", "port": 2525, "security": "none"}


def outbox(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    return fork_run([*args, "--config", str(config)], env, config.parent)


def configure(path: Path, *relays: str) -> Path:
    return write_config(path, {"database": {"url": "sqlite:///./outbox.db"},
                               "relays": [{"name": name, **RELAY} for name in relays]})


def test_an_unknown_relay_is_refused_like_send_refuses_it(tmp_path: Path) -> None:
    config = configure(tmp_path / "outbox.toml", "default")
    create_database(config)
    refused_send = outbox(config, "send", "--from", "a@example.test", "--to",
                          "b@example.test", "--text", "hi", "--relay", "nosuch")
    listed = outbox(config, "queue", "ls", "--relay", "nosuch")
    assert listed.returncode == refused_send.returncode != 0
    assert listed.stderr.strip() == refused_send.stderr.strip() == (
        "error: no relay is named 'nosuch' (known: default)")
    assert listed.stdout == ""
    configured = outbox(config, "queue", "ls", "--relay", "default")
    assert (configured.returncode, configured.stdout.strip()) == (0, "no messages")


def test_mail_of_a_relay_since_removed_is_still_listed_by_its_name(tmp_path: Path) -> None:
    before = configure(tmp_path / "before.toml", "default", "old")
    create_database(before)
    sent = outbox(before, "send", "--from", "a@example.test", "--to", "b@example.test",
                  "--text", "hi", "--relay", "old")
    assert sent.returncode == 0, sent.stderr
    id = sent.stdout.strip().splitlines()[-1]

    after = configure(tmp_path / "after.toml", "default")  # "old" removed
    listed = outbox(after, "queue", "ls", "--relay", "old")
    assert listed.returncode == 0, listed.stderr
    assert id in listed.stdout
    none_sent = outbox(after, "queue", "ls", "--relay", "old", "--status", "sent")
    assert (none_sent.returncode, none_sent.stdout.strip()) == (0, "no messages")
