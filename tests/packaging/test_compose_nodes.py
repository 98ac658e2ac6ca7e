"""compose.yaml's two nodes, run without a container runtime: the image's config file
(deploy/docker/outbox.toml) with the environment compose.yaml gives both nodes, on a
fresh PostgreSQL database. What only a container would change is overridden: the
database host (the test server instead of `postgres`), the listening port and the
attachment directory (the image's is /var/lib/outbox). Relays come as OUTBOX_RELAYS
(JSON), as compose.yaml's header says.

The worker starts alone and creates the schema; a message with an attachment queued by
`outbox send` (its content in the database blob store) is delivered by the worker, intact;
then `serve` joins on the same database, answers /healthz, and mail posted to its API is
delivered too."""

from __future__ import annotations

import json
import re
import secrets
import shutil
from base64 import urlsafe_b64encode
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import pytest

from tests.pg import fresh_database
from tests.processes import API_KEY, OutboxProcess, free_port, wait_until
from tests.smtpd import ScriptedServer

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")

REPO = Path(__file__).resolve().parents[2]


def compose_environment(database_url: str) -> dict[str, str]:
    """The environment compose.yaml gives each node, the database URL replaced."""
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    serve, worker = (compose["services"][n]["environment"] for n in ("serve", "worker"))
    assert serve == worker
    env = {name: re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", value) for name, value in serve.items()}
    assert env["OUTBOX_SECRET_KEY"].startswith("${OUTBOX_SECRET_KEY:?")
    env["OUTBOX_SECRET_KEY"] = urlsafe_b64encode(secrets.token_bytes(32)).decode()
    assert env["OUTBOX_DATABASE__URL"].startswith("postgresql://outbox:outbox@postgres:5432/")
    env["OUTBOX_DATABASE__URL"] = database_url
    return env


@pytest.fixture
def database_url() -> Iterator[str]:
    with fresh_database("outbox_compose") as url:
        yield url


def test_compose_nodes_share_one_database_and_deliver(tmp_path: Path, database_url: str) -> None:
    config_path = tmp_path / "outbox.toml"
    shutil.copy(REPO / "deploy/docker/outbox.toml", config_path)
    bind = f"127.0.0.1:{free_port()}"
    with ScriptedServer() as sink:
        relays = [{"name": "default", "host": "127.0.0.1", "port": sink.port,
                   "security": "none"}]
        env = {**compose_environment(database_url), "OUTBOX_SERVER__BIND": bind,
               "OUTBOX_STORAGE__BLOB_DIR": str(tmp_path / "blobs"),
               "OUTBOX_RELAYS": json.dumps(relays),
               "OUTBOX_AUTH__API_KEYS": json.dumps([{"name": "app", "key": API_KEY}]),
               "OUTBOX_LOGGING__FILE": str(tmp_path / "outbox.log")}
        config = {"server": {"bind": bind}, "logging": {"file": str(tmp_path / "outbox.log")}}
        worker = OutboxProcess(config_path, config, command="worker", env=env).start()
        serve = OutboxProcess(config_path, config, command="serve", env=env)
        try:
            attachment = tmp_path / "report.csv"
            attachment.write_bytes(b"order,total\nA-1,42\n" * 500)
            log = tmp_path / "outbox.log"
            wait_until(lambda: log.exists() and "worker started" in log.read_text(),
                       timeout=60, message="the worker to create the schema and start")
            sent = worker.cli("send", "--from", "shop@example.test", "--to", "ann@example.test",
                              "--subject", "By the worker", "--text", "see the attachment",
                              "--attach", str(attachment))
            assert sent.returncode == 0, sent.stderr
            wait_until(lambda: sink.messages, timeout=30, message="the worker to deliver")
            parts = [p for p in message_from_bytes(sink.messages[0].data).walk()
                     if p.get_filename() == "report.csv"]
            assert [p.get_payload(decode=True) for p in parts] == [attachment.read_bytes()]

            serve.start()  # waits for /healthz
            with serve.client() as client:
                answer = client.post("/v1/messages", json={
                    "from": "shop@example.test", "to": "bob@example.test",
                    "subject": "Through serve", "text": "hello"})
            assert answer.status_code == 202, answer.text
            wait_until(lambda: len(sink.messages) == 2, timeout=30,
                       message="the second message to be delivered")
        finally:
            serve.stop()
            worker.stop()
