"""`POST /v1/uploads` takes the file as the raw body or as a form's file part
(`curl -F file=@PATH`, the real curl binary), streams either into the blob store,
and says which it got; the file a relay receives is byte-identical. Empty uploads
and unreadable forms are refused. A real `outbox serve` on SQLite (files on disk)
and PostgreSQL (files in the database)."""

from __future__ import annotations

import email
import hashlib
import json
import os
import random
import subprocess
import threading
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.dbsql import scalar
from tests.pg import database
from tests.processes import API_KEY, OutboxProcess, base_config, wait_until, write_config
from tests.smtpd import ScriptedServer

BIG = 50_000_000


class Env:
    def __init__(self, outbox: OutboxProcess, relay: ScriptedServer, tmp: Path) -> None:
        self.outbox = outbox
        self.relay = relay
        self.tmp = tmp

    def curl(self, *form: str, extra: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of `curl -F ...` against /v1/uploads."""
        args = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}",
                "-H", f"Authorization: Bearer {API_KEY}", *extra]
        for field in form:
            args += ["-F", field]
        done = subprocess.run([*args, f"{self.outbox.base_url}/v1/uploads"],
                              capture_output=True, check=True, timeout=120)
        body, _, code = done.stdout.decode().rpartition("\n")
        return int(code), json.loads(body)

    def file(self, name: str, data: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def deliver(self, upload_id: str, filename: str) -> bytes:
        """Send the upload as an attachment; the bytes the relay got for it."""
        with self.outbox.client() as client:
            accepted = client.post("/v1/messages", json={
                "from": "shop@example.test", "to": "bob@example.test", "subject": "File",
                "text": "attached", "attachments": [{"filename": filename,
                                                     "upload_id": upload_id}]})
        assert accepted.status_code == 202, accepted.text
        message_id = accepted.json()["message_id"]

        def received() -> list[bytes]:
            return [m.data for m in self.relay.messages if m.message_id == message_id]

        [raw] = wait_until(received, timeout=60, message="delivery")
        parsed: EmailMessage = email.message_from_bytes(raw, policy=policy.default)  # type: ignore[assignment]
        [part] = list(parsed.iter_attachments())
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return payload


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("uploads")
    relay = ScriptedServer().start()
    relays = [{"name": "default", "host": "127.0.0.1", "port": relay.port, "security": "none"}]
    with database(request.param, directory) as url:
        config = base_config(
            directory, url, relays, limits={"max_message_size": "25MB",
                                            "max_attachment_size": "60MB"},
            storage={"blobs": "filesystem" if request.param == "sqlite" else "database",
                     "blob_dir": str(directory / "blobs")},
            delivery={"data_timeout": "30s"})
        outbox = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
        try:
            yield Env(outbox, relay, directory)
        finally:
            outbox.stop(timeout=10)
            relay.stop()


def tricky_bytes(size: int, seed: int) -> bytes:
    """Random bytes with CRLFs, dashes and boundary-like lines in them."""
    rng = random.Random(seed)
    pieces = [rng.randbytes(rng.randrange(1, 4000)) + rng.choice(
        [b"\r\n", b"\r\n--", b"\r\n------------------------", b"--\r\n", b"\n\r"])
        for _ in range(size // 2000)]
    return b"".join(pieces)[:size]


def test_curl_form_upload_is_stored_and_delivered_byte_identical(env: Env) -> None:
    data = tricky_bytes(300_000, seed=1)
    path = env.file("report.pdf", data)

    code, form = env.curl(f"file=@{path};type=application/pdf", "note=ignored")
    assert code == 201, form
    with env.outbox.client() as client:
        raw = client.post("/v1/uploads", content=data,
                          headers={"Content-Type": "application/octet-stream"})

    assert form["received_as"] == "multipart"
    assert (form["filename"], form["content_type"]) == ("report.pdf", "application/pdf")
    assert raw.status_code == 201 and raw.json()["received_as"] == "raw"
    expected = hashlib.sha256(data).hexdigest()
    assert form["sha256"] == raw.json()["sha256"] == expected
    assert form["size"] == len(data)
    assert env.deliver(form["upload_id"], "report.pdf") == data


def test_a_form_upload_with_a_blocked_name_is_refused_and_nothing_kept(env: Env) -> None:
    """docs/limits.md promises the blocked-name check on uploads too; a stranger pass
    found `curl -F file=@plain.exe` stored (201). The name is judged decoded."""
    url = env.outbox.config["database"]["url"]
    before = scalar(url, "SELECT count(*) FROM uploads")
    path = env.file("plain.exe", b"hello")

    code, refused = env.curl(f"file=@{path}")
    encoded, refused_encoded = env.curl(f"file=@{path};filename==?utf-8?q?report.exe?=")
    allowed, kept = env.curl(f"file=@{env.file('fine.txt', b'hello')}")

    assert code == encoded == 422
    assert refused["error"]["code"] == "attachment_blocked"
    assert refused["error"]["field"] == "file"
    assert "'report.exe' is blocked" in refused_encoded["error"]["message"]
    assert allowed == 201 and kept["filename"] == "fine.txt"
    assert scalar(url, "SELECT count(*) FROM uploads") == str(int(before) + 1)


def test_a_raw_upload_without_a_content_type_is_a_file_not_json(env: Env) -> None:
    """Its bytes are not scanned as JSON: brackets nested past limits.max_json_depth, as
    binary files hold, are content like any other (bench/memory.py's random file got
    json_too_deep). Contact imports: tests/e2e/test_recipients.py."""
    data = b"[" * 100 + tricky_bytes(20_000, seed=3)
    with env.outbox.client() as client:
        request = client.build_request("POST", "/v1/uploads", content=data)
        assert "content-type" not in request.headers
        raw = client.send(request)
    assert raw.status_code == 201, raw.text
    assert raw.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert env.deliver(raw.json()["upload_id"], "brackets.bin") == data


def test_a_50_mb_form_upload_streams_without_buffering(env: Env) -> None:
    data = tricky_bytes(BIG, seed=2)
    path = env.file("big.bin", data)
    del data
    pid = env.outbox.proc.pid if env.outbox.proc else 0
    before = rss(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], rss(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        code, form = env.curl(f"file=@{path}")
    finally:
        done.set()
        sampler.join()

    assert code == 201, form
    assert form["size"] == BIG
    assert form["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # Buffering the body would raise the server's memory by at least its 50 MB.
    assert peak[0] - before < 25_000_000, f"RSS grew by {peak[0] - before:,} bytes"


def rss(pid: int) -> int:
    """The process's resident memory now, in bytes."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def test_empty_uploads_are_refused(env: Env) -> None:
    empty = env.file("empty.txt", b"")
    with env.outbox.client() as client:
        raw = client.post("/v1/uploads", content=b"")
    code, form = env.curl(f"file=@{empty}")

    for status, body in ((raw.status_code, raw.json()), (code, form)):
        assert status == 422, body
        assert body["error"]["code"] == "empty_upload"
        assert body["error"]["field"] == "file"


@pytest.mark.parametrize(("form", "extra", "message"), [
    (("note=only a field",), (), "no file"),
    (("file=@{a}", "other=@{a}"), (), "more than one file"),
])
def test_unreadable_forms_are_400(env: Env, form: tuple[str, ...], extra: tuple[str, ...],
                                  message: str) -> None:
    a = env.file("a.txt", b"hello")
    code, body = env.curl(*(f.format(a=a) for f in form), extra=extra)
    assert code == 400, body
    assert body["error"]["code"] == "invalid_form"
    assert message in body["error"]["message"]


PART = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nhello'


@pytest.mark.parametrize(("content_type", "body", "message"), [
    ("multipart/form-data", PART + b"\r\n--x--\r\n", "no boundary"),
    ("multipart/form-data; boundary=x", PART, "before its closing boundary"),
    ("multipart/form-data; boundary=x", b"garbage", "cannot be read"),
])
def test_forms_that_cannot_be_read_are_400(env: Env, content_type: str, body: bytes,
                                           message: str) -> None:
    with env.outbox.client() as client:
        response = client.post("/v1/uploads", content=body,
                               headers={"Content-Type": content_type})
        good = client.post("/v1/uploads", content=PART + b"\r\n--x--\r\n",
                           headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]
    assert good.status_code == 201 and good.json()["size"] == 5
