"""`outbox send --eml FILE` (or `-` for standard input): a whole message queued as it
is, as `sendmail` takes one; its headers' recipients unless `--to` names the envelope.
Real processes on a SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.created import create_database
from tests.processes import write_config
from tests.zygote import run as fork_run

RELAY = {"name": "default", "host": "127.0.0.1", "port": 2525, "security": "none"}
MAIL = ("From: Shop <shop@example.test>\nTo: ann@example.test\nCc: cy@example.test\n"
        "Bcc: audit@example.test\nSubject: Your order\nMessage-ID: <order-7@example.test>\n"
        "\nShipped today.\n")


def outbox(config: Path, *args: str, input: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    return fork_run([*args, "--config", str(config)], env, config.parent, input=input)


def configured(tmp_path: Path) -> Path:
    config = write_config(tmp_path / "outbox.toml", {
        "database": {"url": "sqlite:///./outbox.db"}, "relays": [RELAY]})
    create_database(config)
    return config


def recipients(config: Path, id: str) -> list[tuple[str, str]]:
    shown = outbox(config, "status", id, "--json")
    assert shown.returncode == 0, shown.stderr
    return [(r["address"], r["kind"]) for r in json.loads(shown.stdout)["recipients"]]


def test_a_file_goes_to_its_headers_recipients_as_it_is(tmp_path: Path) -> None:
    config = configured(tmp_path)
    (tmp_path / "order.eml").write_text(MAIL)  # LF line ends, as editors save them
    sent = outbox(config, "send", "--eml", "order.eml", "--json")
    assert sent.returncode == 0, sent.stderr
    accepted = json.loads(sent.stdout)
    assert accepted["message_id"] == "<order-7@example.test>"
    assert recipients(config, accepted["id"]) == [
        ("ann@example.test", "to"), ("cy@example.test", "cc"), ("audit@example.test", "bcc")]


def test_standard_input_with_to_goes_to_the_envelope_given(tmp_path: Path) -> None:
    config = configured(tmp_path)
    sent = outbox(config, "send", "--eml", "-", "--to", "zed@example.test", input=MAIL)
    assert sent.returncode == 0, sent.stderr
    assert recipients(config, sent.stdout.strip()) == [("zed@example.test", "bcc")]


def test_what_cannot_be_sent_is_one_line_naming_why(tmp_path: Path) -> None:
    config = configured(tmp_path)
    (tmp_path / "order.eml").write_text(MAIL)
    (tmp_path / "nofrom.eml").write_text(MAIL.replace("From: Shop <shop@example.test>\n", ""))
    for args, error in [
        (("--eml", "order.eml", "--subject", "x", "--from", "a@example.test"),
         "error: --from, --subject cannot go with --eml: the message's own headers and "
         "body are sent"),
        (("--eml", "missing.eml"), "error: 'missing.eml' is not a readable file"),
        (("--eml", "order.eml", "--to", "zed"),
         "error: to[0]: 'zed' is not an email address (it has no @) (write addresses as "
         "a@example.com or \"Name, Display\" <a@example.com>)"),
        (("--eml", "nofrom.eml"), "error: the message has no From header: give it the "
         "sender's address"),
    ]:
        result = outbox(config, "send", *args)
        assert result.returncode == 1
        assert result.stderr.strip() == error, result.stderr
        assert "Traceback" not in result.stderr
