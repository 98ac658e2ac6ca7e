"""`outbox relay ...` and `outbox keys ...`, run in-process through the real entry
point (`outbox.cli.main`): output, exit codes and one-line errors. (The e2e
suite runs `relay set-credentials` as a process against `outbox serve`.)"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from tests.integration.conftest import ServerFactory
from tests.processes import write_config
from tests.smtpd import ScriptedServer

from outbox.cli import main

GOOD, WRONG = "cli-good-Pw7", "cli-wrong-Pw7"
MAILBOX = "mailer@example.test"


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def server(smtp_server: ServerFactory) -> ScriptedServer:
    return smtp_server(auth=(MAILBOX, GOOD))


@pytest.fixture
def run(tmp_path: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    relay = {"name": "default", "host": "127.0.0.1", "port": server.port, "security": "none",
             "username": MAILBOX, "password": WRONG}
    config = write_config(tmp_path / "outbox.toml", {
        "database": {"url": f"sqlite:///{tmp_path}/outbox.db"},
        "logging": {"file": str(tmp_path / "outbox.log")},
        "delivery": {"helo_name": "client.test", "connect_timeout": "3s",
                     "command_timeout": "3s"},
        "auth": {"api_keys": [{"name": "app", "key": "ob_config_key_1234", "scopes": ["send"]}]},
        "relays": [relay]})

    def invoke(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "argv", ["outbox", *args, "--config", str(config)])
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        with pytest.raises(SystemExit) as exited:
            main()
        captured = capsys.readouterr()
        return Result(int(exited.value.code or 0), captured.out, captured.err)

    yield invoke
    structlog.reset_defaults()  # the CLI pointed logging at this test's file


def test_relay_ls_and_test_show_state_and_the_fix_without_secrets(run: Run,
                                                                   server: ScriptedServer) -> None:
    listed = run("relay", "ls")
    assert listed.code == 0
    assert f"default  127.0.0.1:{server.port}  password  {MAILBOX}  config  ok" in listed.out

    failed = run("relay", "test", "default", "--transcript")
    assert failed.code == 1
    (line,) = failed.err.strip().splitlines()
    assert line.startswith("error: relay default: 127.0.0.1:") and "failed at auth: 535" in line
    assert "app password" in line
    assert "AUTH PLAIN ***" in failed.out
    assert WRONG not in failed.out + failed.err and server.messages == []


def test_set_credentials_from_stdin_then_relay_test_logs_in(run: Run,
                                                            server: ScriptedServer) -> None:
    stored = run("relay", "set-credentials", "default", "--password-stdin", stdin=GOOD + "\n")
    assert stored.code == 0, stored.err
    assert stored.out.strip() == (f"relay default: credentials stored (encrypted, password as "
                                  f"{MAILBOX}); state ok; 0 held message(s) released")

    tested = run("relay", "test", "default")
    assert tested.code == 0, tested.err
    assert f"ok (logged in as {MAILBOX} with PLAIN); no mail sent" in tested.out
    assert "password  mailer@example.test  stored  ok" in run("relay", "ls").out
    assert server.messages == []


@pytest.mark.parametrize(("args", "stdin", "words"), [
    (("relay", "set-credentials", "nosuch", "--password-stdin"), "x\n",
     "no relay named 'nosuch' (known: default)"),
    (("relay", "set-credentials", "default", "--password-stdin"), "",
     "no password on stdin"),
    (("relay", "set-credentials", "default", "--password-stdin", "--refresh-token-stdin"),
     "a\nb\n", "either --password-stdin or the OAuth2 options"),
    (("relay", "set-credentials", "default", "--refresh-token-stdin"), "rt\n",
     "OAuth2 needs token_url"),
    (("keys", "create", "--name", "ci", "--scopes", "root"), "", "unknown scope 'root'"),
    (("keys", "create", "--name", "app", "--scopes", "send"), "",
     "'app' is the name of a key in the config file"),
    (("keys", "revoke", "nobody"), "", "no active API key named 'nobody'"),
])
def test_mistakes_are_one_line_errors(run: Run, args: tuple[str, ...], stdin: str,
                                      words: str) -> None:
    result = run(*args, stdin=stdin)
    assert result.code == 1
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error: ") and words in line, line
    assert "Traceback" not in result.err


def test_keys_are_shown_once_listed_without_the_key_and_revoked(run: Run,
                                                                 tmp_path: Path) -> None:
    created = run("keys", "create", "--name", "ci", "--scopes", "send,read")
    assert created.code == 0
    key = created.out.strip().splitlines()[-1]
    assert key.startswith("ob_") and "shown only now" in created.err

    listed = run("keys", "list")
    assert listed.out.startswith("ci  send,read  created ") and "active" in listed.out
    assert run("keys", "revoke", "ci").out.strip() == "API key 'ci' revoked"
    assert "revoked" in run("keys", "list").out

    everything: Any = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.db*"))
    assert key.encode() not in everything
    assert key not in (tmp_path / "outbox.log").read_text()
