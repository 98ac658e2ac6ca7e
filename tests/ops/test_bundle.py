"""The support bundle, built in-process on a real SQLite database: every item is in
it, and no configured secret is, even one that leaked into the log file."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from outbox.config import Settings
from outbox.config.sample import mask_url_password
from outbox.core.model import MessageStatus
from outbox.ops.bundle import Scrubber, configured_secrets, tail_lines
from outbox.service.diagnostics import support_bundle
from outbox.store.factory import open_store
from outbox.store.urls import safe_url
from tests.contract.support import LEASE, at, finished, new_message
from tests.ops.conftest import ConfigFactory
from tests.smtpd import closed_port

RELAY_PASSWORD = "Relay-Pa55word!"
OAUTH_SECRET = "oauth-client-secret-77"
REFRESH_TOKEN = "refresh-token-abcdef"
API_KEY = "ob_live_key_5f3a9c"
WEBHOOK_SECRET = "whsec_9f8e7d6c"
WEBHOOK_URL = "https://hooks.example.test/services/T0001/B0002/XXXXsecretXXXX"
MEMBERS = ["README.txt", "config.toml", "logs.txt", "messages.json", "queue.json",
           "versions.json", "doctor.json"]


def secret_forms() -> list[bytes]:
    """Each secret as text and in the base64 forms AUTH would put on the wire."""
    plain = [RELAY_PASSWORD, OAUTH_SECRET, REFRESH_TOKEN, API_KEY, WEBHOOK_SECRET,
             "XXXXsecretXXXX", base64.b64encode(RELAY_PASSWORD.encode()).decode(),
             base64.b64encode(f"\0mailer\0{RELAY_PASSWORD}".encode()).decode()]
    return [form.encode() for form in plain]


def config(make_config: ConfigFactory) -> dict[str, Any]:
    port = closed_port()
    return make_config(
        {"name": "main", "host": "127.0.0.1", "port": port, "security": "none",
         "username": "mailer", "password": RELAY_PASSWORD},
        {"name": "o365", "host": "127.0.0.1", "port": port, "username": "box@example.test",
         "oauth2": {"token_url": "http://127.0.0.1:9/token", "client_id": "cid",
                    "client_secret": OAUTH_SECRET, "refresh_token": REFRESH_TOKEN}},
        auth={"api_keys": [{"name": "app", "key": API_KEY}]},
        alerts={"webhook_url": WEBHOOK_URL, "webhook_secret": WEBHOOK_SECRET})


async def fill_database(url: str) -> list[str]:
    store = await open_store(url)
    try:
        ids = []
        for n, status in enumerate((MessageStatus.SENT, MessageStatus.DEFERRED)):
            message = new_message(accepted_at=at(n))
            await store.messages.enqueue(message)
            (claim,) = await store.messages.claim_due("w", at(n), at(n) + LEASE, 1)
            record = finished(claim, status, finished_at=at(n + 1),
                              due_at=at(999) if status is MessageStatus.DEFERRED else None)
            await store.messages.record_attempts([record])
            ids.append(message.id)
        await store.alerts.raise_alert("queue.backlog", "warning", "Mail is waiting too long", "d",
                                       "queue_backlog", at(5))
        return ids
    finally:
        await store.close()


async def test_the_bundle_holds_every_item_and_no_secret(
        tmp_path: Path, make_config: ConfigFactory) -> None:
    settings = Settings(**config(make_config))
    ids = await fill_database(settings.database.url)
    log = Path(settings.logging.file)
    lines = [json.dumps({"event": f"line {n}", "level": "info"}) for n in range(30)]
    lines.insert(25, json.dumps({"event": "a careless line", "password": RELAY_PASSWORD,
                                 "api": API_KEY}))
    log.write_text("\n".join(lines) + "\n")
    output = tmp_path / "bundle.zip"

    members = await support_bundle(settings, output, log_lines=10)

    assert [m.name for m in members] == MEMBERS
    raw = output.read_bytes()
    with zipfile.ZipFile(io.BytesIO(raw)) as bundle:
        assert bundle.namelist() == MEMBERS
        contents = {name: bundle.read(name) for name in MEMBERS}
    for form in secret_forms():
        assert form not in raw, form
        for name, data in contents.items():
            assert form not in data, (name, form)

    readme = contents["README.txt"].decode()
    assert all(name in readme for name in MEMBERS[1:])
    config_text = contents["config.toml"].decode()
    assert f'url = "{settings.database.url}"' in config_text
    assert 'password = "***"' in config_text and 'key = "***"' in config_text
    assert 'webhook_url = "https://hooks.example.test/***"' in config_text
    assert 'webhook_secret = "***"' in config_text
    log_lines = contents["logs.txt"].decode().splitlines()
    assert len(log_lines) == 10 and log_lines[-1] == lines[-1]
    assert any('"password": "***"' in line for line in log_lines), "scrubbed, not dropped"
    messages = json.loads(contents["messages.json"])["messages"]
    assert [m["id"] for m in messages] == list(reversed(ids))
    assert messages[0]["status"] == "deferred" and messages[0]["last_attempt"]["transcript"]
    assert [e["type"] for e in messages[1]["events"]][:2] == ["queued", "claimed"]
    assert "content" not in messages[0] and "subject" not in json.dumps(messages)
    queue = json.loads(contents["queue.json"])
    assert queue["by_status"]["sent"] == 1 and queue["by_status"]["deferred"] == 1
    assert [a["key"] for a in queue["active_alerts"]] == ["queue.backlog"]
    versions = json.loads(contents["versions.json"])
    assert versions["outbox"] and versions["python"] and versions["os"]
    assert versions["database"].startswith("sqlite ")
    assert versions["libraries"]["sqlalchemy"] != "not installed"
    doctor = json.loads(contents["doctor.json"])
    assert doctor["ok"] is False
    assert {"relay main: connect", "database", "queue: held"} <= {
        c["name"] for c in doctor["checks"]}


async def test_a_bundle_without_a_database_or_log_file_says_so(
        tmp_path: Path, make_config: ConfigFactory) -> None:
    values = make_config(database={"url": f"sqlite:///{tmp_path / 'missing.db'}"},
                         logging={"file": ""})
    output = tmp_path / "bundle.zip"

    await support_bundle(Settings(**values), output)

    with zipfile.ZipFile(output) as bundle:
        assert "does not exist" in json.loads(bundle.read("queue.json"))["error"]
        assert b"stderr" in bundle.read("logs.txt")
        assert "messages.json" not in bundle.namelist()
    assert not (tmp_path / "missing.db").exists()


async def test_a_bundle_for_an_unreachable_database_shows_no_password_from_its_url(
        tmp_path: Path, make_config: ConfigFactory) -> None:
    url = (f"postgresql://outbox:user-pass-U1@127.0.0.1:{closed_port()}/outbox"
           "?password=QPASS_q9")
    output = tmp_path / "bundle.zip"

    await support_bundle(Settings(**make_config(database={"url": url})), output)

    with zipfile.ZipFile(output) as bundle:
        contents = {name: bundle.read(name) for name in bundle.namelist()}
    assert "outbox:***@127.0.0.1" in json.loads(contents["queue.json"])["error"]
    assert "?password=***" in json.loads(contents["queue.json"])["error"]
    for name, data in contents.items():
        assert b"user-pass-U1" not in data and b"QPASS_q9" not in data, name


def test_tail_lines_reads_only_the_end(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_bytes(b"".join(b"line %06d %s\n" % (n, b"x" * 200) for n in range(5000)))
    last = tail_lines(path, 3)
    assert [line[:11] for line in last] == [b"line 004997", b"line 004998", b"line 004999"]
    assert len(tail_lines(path, 4999)) == 4999 and tail_lines(path, 0) == []
    short = tmp_path / "short.log"
    short.write_bytes(b"a\nb")
    assert tail_lines(short, 10) == [b"a", b"b"]


def test_scrubber_replaces_secrets_and_their_json_escaped_forms() -> None:
    scrub = Scrubber({'p"q\\x', "hunter22"})
    assert scrub(b'{"a": "p\\"q\\\\x", "b": "hunter22 hunter22"}') == \
        b'{"a": "***", "b": "*** ***"}'


def test_configured_secrets_cover_every_kind(make_config: ConfigFactory) -> None:
    found = configured_secrets(Settings(**config(make_config)))
    assert {RELAY_PASSWORD, OAUTH_SECRET, REFRESH_TOKEN, API_KEY, WEBHOOK_SECRET,
            WEBHOOK_URL} <= found
    assert base64.b64encode(RELAY_PASSWORD.encode()).decode() in found
    assert "hook" not in found and "" not in found


def test_database_urls_lose_only_their_password() -> None:
    assert mask_url_password("sqlite:////var/lib/outbox.db") == "sqlite:////var/lib/outbox.db"
    assert mask_url_password("sqlite:///./outbox.db") == "sqlite:///./outbox.db"
    assert mask_url_password("postgresql://app:pw@db:5432/outbox?sslmode=require") == \
        "postgresql://app:***@db:5432/outbox?sslmode=require"
    assert mask_url_password("postgresql://app@db/outbox?password=pw&x=1") == \
        "postgresql://app@db/outbox?password=***&x=1"
    assert mask_url_password("postgresql://app:pw@/outbox?host=/var/run/postgresql") == \
        "postgresql://app:***@/outbox?host=/var/run/postgresql"


def test_database_urls_lose_every_password_however_it_is_written() -> None:
    """In the query (libpq's password= and sslpassword=), and unencoded in the userinfo
    as SQLAlchemy reads it; every other character stays as typed."""
    assert mask_url_password("postgresql://app@db/outbox?password=p#w&sslpassword=s") == \
        "postgresql://app@db/outbox?password=***&sslpassword=***"
    assert mask_url_password("postgresql://app:p/w?x#y@db/outbox") == \
        "postgresql://app:***@db/outbox"
    assert mask_url_password("postgresql://app:p@ss@db/outbox") == \
        "postgresql://app:***@db/outbox"
    assert mask_url_password("postgresql://app:pw@db/outbox?application_name=my%20app") == \
        "postgresql://app:***@db/outbox?application_name=my%20app"
    assert safe_url("postgres://app:pw@db/outbox?sslmode=require&password=pw2") == \
        "postgresql+asyncpg://app:***@db/outbox?sslmode=require&password=***"
    assert safe_url("postgresql://app:pw@db:port/outbox") == "postgresql://app:***@db:port/outbox"


def test_scrubber_replaces_whole_tokens_not_parts_of_words() -> None:
    """A password `secret` must not turn `webhook_secret` into `webhook_***`."""
    scrub = Scrubber({"secret", "pw-2x"})
    assert scrub(b'webhook_secret = "secret"; link_secret=secret; secrets: 2') == \
        b'webhook_secret = "***"; link_secret=***; secrets: 2'
    assert scrub(b"smtp://user:secret@host C: AUTH pw-2x\npw-2x.") == \
        b"smtp://user:***@host C: AUTH ***\n***."
