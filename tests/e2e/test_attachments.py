"""Attachments end to end: a real `outbox serve` and real aiosmtpd relays, on SQLite
with the filesystem blob store and on PostgreSQL with the database blob store.

Uploads stream in; files arrive byte-identical (sha256 compared after parsing)
under the right MIME structure; blocked types are refused naming the file and
the rule; a blob changed after upload is held, never sent; a relay's SIZE fails
an oversized message before DATA; large files go as signed, expiring links."""

from __future__ import annotations

import base64
import email
import hashlib
import random
import struct
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from outbox.core.links import LinkTicket, sign_link
from tests.pg import database
from tests.processes import API_KEY, TLS, OutboxProcess, base_config, wait_until, write_config
from tests.smtpd import ScriptedServer

LINK_SECRET = "e2e-link-secret-0123456789"
LINK_THRESHOLD = 6_000_000
FINAL = {"sent", "failed", "partially_sent", "cancelled", "held"}
LOGO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class Env:
    def __init__(self, outbox: OutboxProcess, relay: ScriptedServer, small: ScriptedServer,
                 backend: str, blob_dir: Path, database_url: str) -> None:
        self.outbox = outbox
        self.relay = relay
        self.small = small
        self.backend = backend
        self.blob_dir = blob_dir
        self.database_url = database_url

    def client(self) -> httpx.Client:
        return self.outbox.client()

    def upload(self, data: bytes) -> dict[str, Any]:
        def pieces() -> Iterator[bytes]:  # streamed: no Content-Length
            for start in range(0, len(data), 256 * 1024):
                yield data[start:start + 256 * 1024]

        with self.client() as client:
            response = client.post("/v1/uploads", content=pieces(),
                                   headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def post(self, **body: Any) -> httpx.Response:
        body.setdefault("from", "Shop <shop@example.test>")
        body.setdefault("to", ["Bob <bob@example.test>"])
        body.setdefault("subject", "Files")
        body.setdefault("text", "See attached.")
        with self.client() as client:
            return client.post("/v1/messages", json=body)

    def submit(self, **body: Any) -> dict[str, Any]:
        response = self.post(**body)
        assert response.status_code == 202, response.text
        return dict(response.json())

    def wait_final(self, id: str) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            with self.client() as client:
                message = dict(client.get(f"/v1/messages/{id}").json())
            return message if message["status"] in FINAL else None

        return dict(wait_until(final, timeout=60, message=f"message {id} to finish"))

    def received(self, message_id: str) -> EmailMessage:
        [raw] = [m.data for m in self.relay.messages if m.message_id == message_id]
        return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]

    def tamper(self, sha256: str, offset: int) -> None:
        """Change one byte of the stored content, keeping its size."""
        if self.backend == "sqlite":
            path = self.blob_dir / sha256[:2] / sha256[2:4] / sha256
            data = bytearray(path.read_bytes())
            data[offset] ^= 0xFF
            path.write_bytes(bytes(data))
            return
        sql = (f"UPDATE blob_chunks SET data = set_byte(data, {offset}, "
               f"255 - get_byte(data, {offset})) WHERE key = '{sha256}' AND seq = 0")
        subprocess.run(["psql", self.database_url, "-v", "ON_ERROR_STOP=1", "-qc", sql],
                       check=True, capture_output=True)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("attachments")
    relay, small = ScriptedServer().start(), ScriptedServer(size_limit=1_000_000).start()
    relays = [{"name": "default", "host": "127.0.0.1", "port": relay.port, "security": "none"},
              {"name": "small", "host": "127.0.0.1", "port": small.port, "security": "none"}]
    with database(request.param, directory) as url:
        blobs = "filesystem" if request.param == "sqlite" else "database"
        config = base_config(
            directory, url, relays,
            limits={"max_message_size": "25MB", "max_attachment_size": "8MB",
                    "link_threshold": LINK_THRESHOLD, "link_secret": LINK_SECRET},
            storage={"blobs": blobs, "blob_dir": str(directory / "blobs")},
            delivery={"data_timeout": "30s"})
        outbox = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
        try:
            yield Env(outbox, relay, small, request.param, directory / "blobs", url)
        finally:
            outbox.stop(timeout=10)
            relay.stop()
            small.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pe_executable() -> bytes:
    header = bytearray(b"MZ" + b"\0" * 0x3E)
    header[0x3C:0x40] = struct.pack("<I", 0x80)
    return bytes(header) + b"\0" * 0x40 + b"PE\0\0\x4c\x01" + bytes(range(256)) * 8


def structure(msg: EmailMessage) -> Any:
    if msg.is_multipart():
        return (msg.get_content_type(), [structure(p) for p in msg.iter_parts()])  # type: ignore[arg-type]
    return msg.get_content_type()


# --- arrive byte-identical ------------------------------------------------------------------

def test_files_arrive_byte_identical_under_a_correct_structure(env: Env) -> None:
    five_mb = random.Random(5).randbytes(5_000_000)
    uploaded = env.upload(five_mb)
    assert (uploaded["size"], uploaded["sha256"]) == (5_000_000, sha(five_mb))
    files = {"empty.bin": b"", "one.bin": b"\x00", "random-5mb.bin": five_mb,
             "Résumé 2026.pdf": b"%PDF-1.7\n" + bytes(range(256)) * 40}
    attachments = [
        {"filename": "empty.bin", "content_base64": ""},
        {"filename": "one.bin", "content_base64": b64(b"\x00")},
        {"filename": "random-5mb.bin", "upload_id": uploaded["upload_id"]},
        {"filename": "Résumé 2026.pdf", "content_type": "application/pdf",
         "content_base64": b64(files["Résumé 2026.pdf"])},
        {"filename": "logo.png", "content_type": "image/png", "content_id": "logo@shop",
         "content_base64": b64(LOGO)},
    ]
    accepted = env.submit(html='<p>Logo: <img src="cid:logo@shop"></p>', attachments=attachments)
    assert env.wait_final(accepted["id"])["status"] == "sent"

    msg = env.received(accepted["message_id"])
    assert structure(msg) == ("multipart/mixed", [
        ("multipart/alternative", ["text/plain", ("multipart/related", ["text/html",
                                                                        "image/png"])]),
        "application/octet-stream", "application/octet-stream", "application/octet-stream",
        "application/pdf"])
    found = {p.get_filename(): sha(p.get_payload(decode=True)) for p in msg.iter_attachments()}
    assert found == {name: sha(data) for name, data in files.items()}
    (logo,) = [p for p in msg.walk() if p["Content-ID"] == "<logo@shop>"]
    assert sha(logo.get_payload(decode=True)) == sha(LOGO)
    assert msg.get_body(("html",)).get_content().startswith('<p>Logo: <img src="cid:logo@shop">')


# --- refused --------------------------------------------------------------------------------

@pytest.mark.parametrize(("filename", "upload", "rule"), [
    ("report.pdf", False, "Windows executable"),
    ("report.pdf", True, "Windows executable"),
    ("setup.exe", False, "files ending in .exe"),
    ("invoice.pdf.exe", False, "files ending in .exe"),
])
def test_blocked_files_are_refused_naming_the_file_and_the_rule(env: Env, filename: str,
                                                                upload: bool,
                                                                rule: str) -> None:
    data = pe_executable() if "Windows" in rule else b"harmless"
    source = ({"upload_id": env.upload(data)["upload_id"]} if upload
              else {"content_base64": b64(data)})
    response = env.post(attachments=[{"filename": "ok.txt", "content_base64": b64(b"ok")},
                                     {"filename": filename, **source}])
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "attachment_blocked"
    assert error["field"] == "attachments[1].filename"
    assert f"'{filename}'" in error["message"] and rule in error["message"]
    assert "limits.blocked_extensions" in error["message"]


def test_uploads_over_the_attachment_limit_are_refused(env: Env) -> None:
    with env.client() as client:
        declared = client.post("/v1/uploads", content=b"x" * 8_000_001)
        assert declared.status_code == 413
        assert "limits.max_attachment_size" in declared.json()["error"]["message"]
        streamed = client.post("/v1/uploads", content=iter([b"x" * 1_000_000] * 9))
        assert streamed.status_code == 413
        unknown = env.post(attachments=[{"filename": "a.bin", "upload_id": "up_nope"}])
        assert unknown.status_code == 422
        assert unknown.json()["error"]["field"] == "attachments[0].upload_id"


# --- integrity ------------------------------------------------------------------------------

def test_a_blob_changed_after_upload_is_held_not_sent(env: Env) -> None:
    data = random.Random(7).randbytes(300_000)
    uploaded = env.upload(data)
    env.tamper(uploaded["sha256"], offset=150_000)
    accepted = env.submit(attachments=[{"filename": "data.bin",
                                        "upload_id": uploaded["upload_id"]}])
    message = env.wait_final(accepted["id"])

    assert message["status"] == "held"
    assert message["attempts"] == 0  # holding spends no attempt
    (recipient,) = message["recipients"]
    assert recipient["guidance_detail"]["key"] == "attachment_corrupt"
    assert "sha256" in message["hold_reason"]
    assert [m for m in env.relay.messages if m.message_id == accepted["message_id"]] == []


# --- the relay's SIZE -----------------------------------------------------------------------

def test_a_message_over_the_relays_size_fails_before_data(env: Env) -> None:
    connections_before = len(env.small.connections)
    uploaded = env.upload(random.Random(2).randbytes(2_000_000))
    accepted = env.submit(relay="small", attachments=[
        {"filename": "two-mb.bin", "upload_id": uploaded["upload_id"]}])
    message = env.wait_final(accepted["id"])

    assert message["status"] == "failed"
    (recipient,) = message["recipients"]
    assert recipient["guidance_detail"]["key"] == "message_too_big_for_relay"
    assert "1000000" in (recipient["reply"] or "")
    commands = [c for log in env.small.connections[connections_before:] for c in log.commands]
    assert "EHLO" in commands
    assert "DATA" not in commands and "MAIL" not in commands
    assert env.small.messages == []


# --- send as link ---------------------------------------------------------------------------

def test_a_large_file_goes_as_a_link_that_downloads_the_exact_file(env: Env) -> None:
    big = random.Random(3).randbytes(LINK_THRESHOLD + 500_000)
    uploaded = env.upload(big)
    accepted = env.submit(html="<html><body><p>Hi</p></body></html>", attachments=[
        {"filename": "Große Datei.iso", "upload_id": uploaded["upload_id"]},
        {"filename": "small.txt", "content_base64": b64(b"small")}])
    assert env.wait_final(accepted["id"])["status"] == "sent"

    msg = env.received(accepted["message_id"])
    assert [p.get_filename() for p in msg.iter_attachments()] == ["small.txt"]
    text = msg.get_body(("plain",)).get_content()
    url = next(word for word in text.split() if "/d/" in word)
    assert url.startswith(env.outbox.base_url + "/d/")
    assert url in msg.get_body(("html",)).get_content()

    # No API key: the token is the permission.
    with httpx.Client(timeout=30, verify=TLS) as anonymous:
        download = anonymous.get(url)
        assert download.status_code == 200
        assert sha(download.content) == sha(big)
        assert "filename*=UTF-8''Gro%C3%9Fe%20Datei.iso" in download.headers[
            "content-disposition"]
        token = url.rsplit("/", 1)[1]
        tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
        assert anonymous.get(f"{env.outbox.base_url}/d/{tampered}").status_code == 404
        expired = sign_link(LINK_SECRET.encode(), LinkTicket(
            sha(big), len(big), "Große Datei.iso", "application/octet-stream",
            datetime.now(UTC) - timedelta(minutes=1)))
        gone = anonymous.get(f"{env.outbox.base_url}/d/{expired}")
        assert gone.status_code == 410
        assert gone.json()["error"]["code"] == "link_expired"


def test_uploads_need_an_api_key_with_the_send_scope(env: Env) -> None:
    with httpx.Client(base_url=env.outbox.base_url, timeout=30, verify=TLS) as anonymous:
        assert anonymous.post("/v1/uploads", content=b"x").status_code == 401
    assert API_KEY  # the env's client carries it
