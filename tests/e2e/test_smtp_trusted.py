"""SMTP submission from `[submission] trusted_networks` (Postfix's mynetworks): a client
there sends without AUTH, as the API key `trusted_key`, whose scope and rate limits
apply; a client elsewhere must still log in; a trusted_key that is no usable key is a
4xx naming it. Real `outbox serve`, real clients; clients from 127.0.0.2 stand for an
untrusted network (all of 127/8 is this machine's loopback)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import database
from tests.processes import OutboxProcess, wait_until, write_config
from tests.smtpd import ScriptedServer
from tests.submission import queued, raw_message, smtp_address, submission_config

ADMIN_KEY = "ob_test_admin_key_5Jq2Lx8"  # makes and revokes keys (POST/DELETE /v1/keys)
TRUSTED = {"trusted_networks": ["127.0.0.1/32"], "trusted_key": "app", "security": "none"}


@pytest.fixture(scope="module")
def sink() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


def serve(directory: Path, url: str, sink: ScriptedServer, **submission: Any
          ) -> tuple[OutboxProcess, dict[str, Any]]:
    config = submission_config(directory, url, sink, "", **{**TRUSTED, **submission})
    return OutboxProcess(write_config(directory / "outbox.toml", config), config).start(), config


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def trusting(request: pytest.FixtureRequest, sink: ScriptedServer,
             tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[OutboxProcess, dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("trusted")
    with database(request.param, directory) as url:
        process, config = serve(directory, url, sink)
        try:
            yield process, config
        finally:
            process.stop(timeout=10)


def client(config: dict[str, Any], source: str = "127.0.0.1") -> smtplib.SMTP:
    smtp = smtplib.SMTP(*smtp_address(config), timeout=30, source_address=(source, 0))
    smtp.ehlo()
    return smtp


def test_a_trusted_client_sends_without_logging_in(
        trusting: tuple[OutboxProcess, dict[str, Any]], sink: ScriptedServer) -> None:
    process, config = trusting
    raw, message_id = raw_message()
    with client(config) as smtp:
        smtp.mail("shop@example.test")
        smtp.rcpt("ann@example.test")
        code, reply = smtp.data(raw)
    assert code == 250, reply
    id, _ = queued(reply.decode())
    with process.client() as api:
        wait_until(lambda: api.get(f"/v1/messages/{id}").json()["status"] == "sent",
                   message="the trusted client's message to be sent")
    assert sink.message_ids[message_id] == 1


def test_a_client_outside_the_trusted_networks_must_still_log_in(
        trusting: tuple[OutboxProcess, dict[str, Any]]) -> None:
    _, config = trusting
    with client(config, source="127.0.0.2") as smtp:
        code, reply = smtp.mail("shop@example.test")
    assert (code, reply[:5]) == (530, b"5.7.0"), reply


@pytest.mark.parametrize("key", ["viewer", "nobody"])  # read scope only; no such key
def test_a_trusted_key_that_cannot_send_is_a_4xx_naming_it(
        key: str, tmp_path: Path, sink: ScriptedServer) -> None:
    process, config = serve(tmp_path, f"sqlite:///{tmp_path}/outbox.db", sink,
                            trusted_key=key)
    try:
        with client(config) as smtp:
            code, reply = smtp.mail("shop@example.test")
        assert code == 451, reply
        assert f"API key '{key}' (submission.trusted_key)" in reply.decode()
        (logged,) = wait_until(lambda: process.logged(
            "trusted smtp client refused: submission.trusted_key is no active key with the "
            "send scope"), message="the refusal in the log")
        assert (logged["user"], logged["peer"]) == (key, "127.0.0.1")
    finally:
        process.stop(timeout=10)


def test_the_trusted_keys_rate_limit_applies(tmp_path: Path, sink: ScriptedServer) -> None:
    """Mail from the trusted network counts against trusted_key's messages_per_minute:
    it is that key's mail, not mail of nobody's."""
    directory = tmp_path
    config = submission_config(directory, f"sqlite:///{directory}/outbox.db", sink, "",
                               **TRUSTED)
    config["auth"]["api_keys"][0]["messages_per_minute"] = 1
    process = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
    try:
        with client(config) as smtp:
            replies = []
            for _ in range(2):
                smtp.mail("shop@example.test")
                smtp.rcpt("ann@example.test")
                replies.append(smtp.data(raw_message()[0]))
        assert [code for code, _ in replies] == [250, 451]
        assert b"4.7.1" in replies[1][1]
    finally:
        process.stop(timeout=10)


def test_a_trusted_session_sends_nothing_more_once_its_key_is_revoked(
        tmp_path: Path, sink: ScriptedServer) -> None:
    """trusted_key names a key made at run time; once it is revoked, a session already
    logged in as it gets the 451 naming it at its next MAIL, and nothing is queued."""
    config = submission_config(tmp_path, f"sqlite:///{tmp_path}/outbox.db", sink, "",
                               **{**TRUSTED, "trusted_key": "relayer"})
    config["auth"]["api_keys"].append({"name": "root", "key": ADMIN_KEY, "scopes": ["admin"]})
    process = OutboxProcess(write_config(tmp_path / "outbox.toml", config), config).start()
    try:
        with process.client(ADMIN_KEY) as admin, client(config) as smtp:
            made = admin.post("/v1/keys", json={"name": "relayer", "scopes": ["send"]})
            assert made.status_code == 201, made.text
            assert smtp.sendmail("shop@example.test", ["ann@example.test"],
                                 raw_message()[0]) == {}
            assert admin.delete("/v1/keys/relayer").status_code == 204
            raw, message_id = raw_message()
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                smtp.sendmail("shop@example.test", ["ann@example.test"], raw)
        assert refused.value.smtp_code == 451
        assert b"API key 'relayer' (submission.trusted_key)" in refused.value.smtp_error
        with process.client() as api:
            listed = api.get("/v1/messages", params={"limit": 500}).json()["messages"]
        assert message_id not in {m["message_id"] for m in listed}
    finally:
        process.stop(timeout=10)


def test_a_lone_angle_bracket_is_a_malformed_address_not_a_crash(
        trusting: tuple[OutboxProcess, dict[str, Any]]) -> None:
    """The stdlib's parser raises on "MAIL FROM:<"; aiosmtpd answered 500 with the
    exception's name. The listener answers 553 5.1.3 and the session goes on."""
    _, config = trusting
    with client(config) as smtp:
        code, reply = smtp.docmd("MAIL", "FROM:<")
        assert (code, reply[:5]) == (553, b"5.1.3"), reply
        assert smtp.mail("shop@example.test")[0] == 250
