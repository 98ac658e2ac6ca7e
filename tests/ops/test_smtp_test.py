"""`outbox smtp-test` against the scripted SMTP server on loopback: the sink gets the
message, the conversation is printed as it happens (AUTH redacted), and the last
line says what happened with the guidance for it."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Any

import pytest

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.guidance import describe
from outbox.core.report import Condition
from outbox.errors import InvalidAddress
from outbox.ops.smtp_test import build_test_message, default_sender, send_test
from tests.oauth_smtpd import MAILBOX
from tests.ops.conftest import (
    STORED_REFRESH,
    ConfigFactory,
    OAuthRelay,
    ServerFactory,
    config_file,
    set_credentials,
)
from tests.smtpd import closed_port, reply

RelayFor = Callable[..., dict[str, Any]]
USER, PASSWORD = "mailer@example.test", "s3cret-Relay-pw"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
DELIVERY = DeliverySettings(connect_timeout="3s", command_timeout="3s", data_timeout="5s",
                            helo_name="client.test")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "outbox", *args], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "200"}, timeout=60,
                          check=False)


def test_smtp_test_sends_one_message_and_prints_the_transcript_and_success(
        tmp_path: Path, smtp_server: ServerFactory, relay_for: RelayFor,
        make_config: ConfigFactory) -> None:
    server = smtp_server(tls="starttls", auth=(USER, PASSWORD))
    path = config_file(tmp_path, make_config(relay_for(server, username=USER,
                                                       password=PASSWORD)))
    result = run_cli("smtp-test", "--relay", "test", "--to", "ann@example.test",
                     "--config", str(path))

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Sending a test message through relay test (127.0.0.1:")
    assert lines[0].endswith("; credentials: config file")
    transcript = "\n".join(lines[1:-1])
    for expected in ("S: 220 ", "C: EHLO client.test", "C: STARTTLS", "*: TLS established",
                     "C: AUTH PLAIN ***", "S: 235 ", "C: MAIL FROM:<mailer@example.test>",
                     "C: RCPT TO:<ann@example.test>", "bytes of message data>", "C: .",
                     "S: 250 2.0.0 OK: queued"):
        assert expected in transcript, expected
    assert lines[-1].startswith("OK: relay test accepted the message for ann@example.test "
                                "(250 2.0.0 OK: queued); Message-ID <")
    assert PASSWORD not in result.stdout + result.stderr

    (received,) = server.messages
    assert (received.mail_from, received.rcpt_tos) == (USER, ("ann@example.test",))
    parsed = email.message_from_bytes(received.data, policy=policy.default)
    assert parsed["X-Outbox-Test"] == "smtp-test"
    assert parsed["Subject"] == "Outbox SMTP test through relay test"
    assert received.message_id is not None and received.message_id in lines[-1]
    assert server.connections[0].tls and server.connections[0].authenticated_as == USER


STORED = "stored credentials (outbox relay set-credentials)"


async def test_smtp_test_logs_in_with_stored_credentials_and_says_so(
        tmp_path: Path, oauth_relay: OAuthRelay, make_config: ConfigFactory) -> None:
    """As delivery and `relay test` do: the refresh token stored with `relay
    set-credentials` overrides the config file's stale one."""
    config = make_config(oauth_relay.relay)
    await set_credentials(config, "oauthrelay", refresh_token=STORED_REFRESH)
    result = run_cli("smtp-test", "--relay", "oauthrelay", "--to", "ann@example.test",
                     "--config", str(config_file(tmp_path, config)))

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Sending a test message through relay oauthrelay (127.0.0.1:"
                               f"{oauth_relay.server.port}, security none) from {MAILBOX} ")
    assert lines[0].endswith(f"; credentials: {STORED}")
    assert "C: AUTH XOAUTH2 ***" in result.stdout
    assert lines[-1].startswith("OK: relay oauthrelay accepted the message")
    (received,) = oauth_relay.server.messages
    assert received.rcpt_tos == ("ann@example.test",)
    shown = result.stdout + result.stderr
    assert not any(secret in shown for secret in oauth_relay.authority.secrets())
    assert STORED_REFRESH not in shown


async def test_smtp_test_uses_a_stored_password_the_config_file_does_not_have(
        tmp_path: Path, smtp_server: ServerFactory, relay_for: RelayFor,
        make_config: ConfigFactory) -> None:
    """Delivery logs in with it, and holds the mail of a relay that offers no AUTH:
    smtp-test does the same instead of sending without AUTH."""
    server = smtp_server()  # offers no AUTH
    config = make_config(relay_for(server, name="picky"))
    await set_credentials(config, "picky", username=USER, password=PASSWORD)
    result = run_cli("smtp-test", "--relay", "picky", "--to", "ann@example.test",
                     "--config", str(config_file(tmp_path, config)))

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(f"; credentials: {STORED}")
    not_offered = describe(Condition.AUTH_NOT_OFFERED.value)
    assert lines[-1].startswith(f"FAILED at auth: {not_offered.title}: ")
    assert f"(credentials: {STORED}). Next step: {not_offered.next_step}" in lines[-1]
    assert server.messages == []
    assert PASSWORD not in result.stdout + result.stderr


async def test_smtp_test_attaches_files(tmp_path: Path, smtp_server: ServerFactory,
                                        relay_for: RelayFor) -> None:
    server = smtp_server()
    attachment = tmp_path / "report.pdf"
    attachment.write_bytes(b"%PDF-1.4 test")
    relay = RelaySettings(**relay_for(server))
    message = build_test_message("ops@example.test", "ann@example.test", relay, NOW,
                                 [attachment])

    result = await send_test(relay, DELIVERY, message, lambda line: None)

    assert result.ok, result.summary
    (received,) = server.messages
    parsed = email.message_from_bytes(received.data, policy=policy.default)
    (part,) = list(parsed.iter_attachments())  # type: ignore[attr-defined]
    assert part.get_filename() == "report.pdf"
    assert part.get_content() == b"%PDF-1.4 test"
    assert received.mail_from == "ops@example.test"


async def test_a_refused_recipient_ends_with_the_guidance_and_fails(
        smtp_server: ServerFactory, relay_for: RelayFor) -> None:
    server = smtp_server(script=[reply("RCPT", "550 5.1.1 No such user here")])
    relay = RelaySettings(**relay_for(server))
    message = build_test_message("ops@example.test", "nobody@example.test", relay, NOW)
    lines: list[str] = []

    result = await send_test(relay, DELIVERY, message, lines.append)

    assert not result.ok
    assert result.summary.startswith("FAILED: ")
    assert 'The server said: "550 5.1.1 No such user here".' in result.summary
    assert "Next step: " in result.summary
    assert any(line.endswith("S: 550 5.1.1 No such user here") for line in lines)
    assert server.messages == []


async def test_lines_are_printed_as_they_happen(smtp_server: ServerFactory,
                                                relay_for: RelayFor) -> None:
    server = smtp_server()
    relay = RelaySettings(**relay_for(server))
    message = build_test_message("ops@example.test", "ann@example.test", relay, NOW)
    seen_at_mail: list[int] = []
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if "C: MAIL FROM" in line:
            seen_at_mail.append(len(server.messages))

    result = await send_test(relay, DELIVERY, message, echo)

    assert result.ok
    assert seen_at_mail == [0], "MAIL was shown before the relay had the message"
    assert lines[0].split(": ", 1)[1].startswith("220 ")


async def test_a_session_that_cannot_start_names_the_stage_and_the_fix() -> None:
    relay = RelaySettings(name="down", host="127.0.0.1", port=closed_port(), security="none")
    message = build_test_message("ops@example.test", "ann@example.test", relay, NOW)
    lines: list[str] = []

    result = await send_test(relay, DELIVERY, message, lines.append)

    refused = describe(Condition.CONNECTION_REFUSED.value)
    assert not result.ok
    assert result.summary.startswith(f"FAILED at connect: {refused.title}: ")
    assert result.summary.endswith(f"Next step: {refused.next_step}")
    assert any("failed at connect" in line for line in lines)


def test_a_bad_address_is_refused_before_connecting() -> None:
    relay = RelaySettings(name="r", host="127.0.0.1", port=closed_port())
    with pytest.raises(InvalidAddress):
        build_test_message("ops@example.test", "not an address", relay, NOW)


def test_the_cli_names_an_unknown_relay_in_one_line(tmp_path: Path,
                                                    make_config: ConfigFactory) -> None:
    path = config_file(tmp_path, make_config({"name": "main", "host": "127.0.0.1",
                                              "port": closed_port()}))
    result = run_cli("smtp-test", "--relay", "nope", "--to", "a@example.test",
                     "--config", str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no relay named 'nope' (known: main)"
    assert result.stdout == ""


@pytest.mark.parametrize("hostname", ["vm", "", "host_with_underscore"])
def test_the_default_sender_is_valid_on_any_host(monkeypatch: pytest.MonkeyPatch,
                                                 hostname: str) -> None:
    """A host name without a dot (`vm`) must not make the default sender invalid."""
    monkeypatch.setattr("socket.gethostname", lambda: hostname)
    relay = RelaySettings(name="r", host="127.0.0.1", port=2525, security="none")
    sender = default_sender(relay, DeliverySettings(helo_name=""))
    build_test_message(sender, "ann@example.test", relay, NOW)  # Outbox's own validator
    assert sender == "outbox-smtp-test@localhost.localdomain"


def test_an_invalid_sender_is_one_line_naming_the_from_option(
        tmp_path: Path, make_config: ConfigFactory) -> None:
    path = config_file(tmp_path, make_config({"name": "main", "host": "127.0.0.1",
                                              "port": closed_port()}))
    result = run_cli("smtp-test", "--relay", "main", "--to", "a@example.test",
                     "--from", "me@vm", "--config", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --from: 'me@vm' is not a valid")
    assert "--from ADDRESS" in lines[0]
