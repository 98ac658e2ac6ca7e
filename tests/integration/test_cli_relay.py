"""`outbox relay ...` and `outbox keys ...`, run in-process through the real entry
point (`outbox.main.main`): output, exit codes and one-line errors. (The e2e
suite runs `relay set-credentials` as a process against `outbox serve`.)"""

from __future__ import annotations

import io
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from tests.created import create_database
from tests.integration.conftest import ServerFactory
from tests.processes import write_config
from tests.smtpd import ScriptedServer, closed_port

from outbox.main import main

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


def write_relay_config(tmp_path: Path, port: int) -> Path:
    relay = {"name": "default", "host": "127.0.0.1", "port": port, "security": "none",
             "username": MAILBOX, "password": WRONG}
    return write_config(tmp_path / "outbox.toml", {
        "database": {"url": f"sqlite:///{tmp_path}/outbox.db"},
        "logging": {"file": str(tmp_path / "outbox.log")},
        "delivery": {"helo_name": "client.test", "connect_timeout": "3s",
                     "command_timeout": "3s"},
        "auth": {"api_keys": [{"name": "app", "key": "ob_config_key_1234", "scopes": ["send"]}]},
        "relays": [relay]})


@pytest.fixture
def run(tmp_path: Path, server: ScriptedServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    config = write_relay_config(tmp_path, server.port)

    def invoke(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "argv", ["outbox", *args, "--config", str(config)])
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        with pytest.raises(SystemExit) as exited:
            main()
        captured = capsys.readouterr()
        return Result(int(exited.value.code or 0), captured.out, captured.err)

    create_database(config)  # as serve would: no other command creates it
    yield invoke
    structlog.reset_defaults()  # the CLI pointed logging at this test's file


def test_relay_ls_and_test_show_state_and_the_fix_without_secrets(run: Run,
                                                                   server: ScriptedServer) -> None:
    listed = run("relay", "ls")
    assert listed.code == 0
    assert (f"default  127.0.0.1:{server.port}  password  {MAILBOX}  credentials: config file  "
            "idle  delivery: open") in listed.out

    failed = run("relay", "test", "default", "--transcript")
    assert failed.code == 1
    (line,) = failed.err.strip().splitlines()
    assert line.startswith("error: relay default: 127.0.0.1:") and "failed at auth: 535" in line
    assert "app password" in line
    assert "AUTH PLAIN ***" in failed.out
    # What the relay offers, as the guidance that points here says (its EHLO answer).
    assert "EHLO" in failed.out and "250-AUTH" in failed.out, failed.out
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
    assert (f"password  {MAILBOX}  credentials: stored (overrides the config file)  idle"
            in run("relay", "ls").out)
    assert server.messages == []


def stored_credentials(tmp_path: Path) -> list[Any]:
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        return [row[0] for row in db.execute("SELECT credentials FROM relay_auth")]


def test_set_credentials_logs_in_first_and_stores_nothing_the_relay_refuses(
        run: Run, server: ScriptedServer, tmp_path: Path) -> None:
    refused = run("relay", "set-credentials", "default", "--password-stdin",
                  stdin="not-the-" + GOOD + "\n")
    assert refused.code == 1
    (line,) = refused.err.strip().splitlines()
    assert line.startswith(f"error: relay default: 127.0.0.1:{server.port} refused the login "
                           "(535 5.7.8 "), line
    assert line.endswith("); nothing stored (check them by signing in outside Outbox (with "
                         "MFA, use an app password), then set them again; or store them anyway "
                         "with --no-verify)"), line
    assert [c.authenticated_as for c in server.connections] == [None]  # one real AUTH, refused
    assert stored_credentials(tmp_path) in ([], [None])
    assert "credentials: config file" in run("relay", "ls").out
    log = (tmp_path / "outbox.log").read_text()
    assert "not-the-" + GOOD not in refused.out + refused.err + log

    stored = run("relay", "set-credentials", "default", "--password-stdin", stdin=GOOD + "\n")
    assert stored.code == 0, stored.err
    assert server.connections[-1].authenticated_as == MAILBOX  # verified by logging in
    assert len(stored_credentials(tmp_path)) == 1 and stored_credentials(tmp_path)[0]
    assert GOOD not in stored.out + stored.err + (tmp_path / "outbox.log").read_text()
    assert server.messages == []


def test_a_relay_that_cannot_be_reached_stores_nothing_and_says_so(
        run: Run, tmp_path: Path) -> None:
    port = closed_port()
    write_relay_config(tmp_path, port)  # the relay moved to a port where nothing listens
    refused = run("relay", "set-credentials", "default", "--password-stdin", stdin=GOOD + "\n")
    assert refused.code == 1
    (line,) = refused.err.strip().splitlines()
    assert line.startswith(f"error: relay default: 127.0.0.1:{port} could not verify "
                           "the login (at connect: "), line
    assert "nothing stored" in line and line.endswith("; or store them anyway with --no-verify)")
    assert stored_credentials(tmp_path) in ([], [None])
    assert GOOD not in refused.out + refused.err + (tmp_path / "outbox.log").read_text()


def test_no_verify_stores_without_connecting(run: Run, server: ScriptedServer) -> None:
    stored = run("relay", "set-credentials", "default", "--password-stdin", "--no-verify",
                 stdin="unchecked-" + GOOD + "\n")
    assert stored.code == 0, stored.err
    assert "credentials stored" in stored.out
    assert server.connections == []
    assert "credentials: stored (overrides the config file)" in run("relay", "ls").out


def test_clear_credentials_lets_the_config_files_apply_again(
        run: Run, server: ScriptedServer, tmp_path: Path) -> None:
    assert run("relay", "set-credentials", "default", "--username", "other@example.test",
               "--password-stdin", "--no-verify", stdin=GOOD + "\n").code == 0
    assert "other@example.test  credentials: stored" in run("relay", "ls").out

    cleared = run("relay", "clear-credentials", "default")
    assert cleared.code == 0, cleared.err
    assert cleared.out.strip() == ("relay default: stored credentials removed; the config "
                                   f"file's apply again (password as {MAILBOX})")
    assert f"{MAILBOX}  credentials: config file" in run("relay", "ls").out
    assert stored_credentials(tmp_path) == [None]

    again = run("relay", "clear-credentials", "default")
    assert again.code == 0
    assert again.out.strip() == ("relay default: no stored credentials; the config file's "
                                 "already apply")


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
    # A config-file key was "no active API key named 'app'" though it works.
    (("keys", "revoke", "app"), "", "API key 'app' is set in the config file, not stored"),
    (("relay", "clear-credentials", "nosuch"), "", "no relay named 'nosuch' (known: default)"),
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

    everything: Any = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.db*") if p.is_file())
    assert key.encode() not in everything
    assert key not in (tmp_path / "outbox.log").read_text()


def test_keys_take_the_contacts_scope(run: Run) -> None:
    """The README tells you to make a key with `contacts` to change the address book."""
    created = run("keys", "create", "--name", "book", "--scopes", "read,contacts")
    assert created.code == 0, created.err
    assert run("keys", "list").out.startswith("book  read,contacts  created ")


def test_set_credentials_names_the_option_that_is_missing(run: Run) -> None:
    """A stranger pass was told to use the HTTP API ('PUT /v1/relays/{name}/credentials')
    for what the command's own --token-url gives."""
    refused = run("relay", "set-credentials", "default", "--refresh-token-stdin",
                  stdin="a-refresh-token\n")
    assert refused.code != 0
    assert "OAuth2 needs token_url (give it with --token-url)" in refused.err
    assert "/v1/" not in refused.err and "a-refresh-token" not in refused.err
