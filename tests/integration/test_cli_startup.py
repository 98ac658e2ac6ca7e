"""`outbox --help` starts without the heavy modules (SPEC §4: CLI start-up under 300 ms;
the figure itself comes from `bench/cli_startup.py`, never from a timed test): the HTTP
framework, the database layer, the SMTP libraries, the settings schema and the logging
stack load only when a command that needs them runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.created import create_database

HEAVY = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "aiosqlite", "asyncpg",
         "aiosmtpd", "aiosmtplib", "dkim", "httpx", "pydantic", "pydantic_settings",
         "structlog", "prometheus_client", "email_validator", "ldap3", "vobject", "asyncio")


def run_importtime(*args: str, cwd: Path | None = None) -> tuple[str, set[str]]:
    """The stdout of a fresh `outbox ARGS` process, and every module it imported, by its
    full dotted name (python -X importtime)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "outbox", *args],
                            env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return result.stdout, names


def imported_modules(*args: str) -> set[str]:
    """The top-level packages a fresh `outbox ARGS` process imported."""
    return {name.split(".")[0] for name in run_importtime(*args)[1]}


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("relay", "--help"),
                                  ("send", "--help")])
def test_help_does_not_import_heavy_modules(args: tuple[str, ...]) -> None:
    imported = imported_modules(*args)
    assert "typer" in imported  # the measurement itself works
    # Typer itself loads pydantic (typer._adapters) to show a sub-command's help.
    heavy = set(HEAVY) - ({"pydantic"} if len(args) > 1 else set())
    assert not imported & heavy, sorted(imported & heavy)


# What a command that reads the database needs: the settings, the store (SQLAlchemy Core
# on SQLite) and the view it prints. Not the HTTP framework, not PostgreSQL's driver, the
# SMTP, DKIM, DNS and HTTP clients, nor the address validator (see bench/cli_startup.py).
NOT_FOR_READING = ("asyncpg", "fastapi", "starlette", "uvicorn", "aiosmtplib", "aiosmtpd",
                   "dkim", "dns", "nacl", "httpx", "httpcore", "email_validator", "ldap3",
                   "vobject", "outbox.api", "outbox.runtime", "outbox.ops.doctor",
                   "outbox.delivery.smtp", "outbox.delivery.gate", "outbox.worker.loop",
                   "outbox.service.webhook_dispatch")


@pytest.fixture(scope="module")
def reading_database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A migrated SQLite database with one queued message (made once per module: each
    `outbox` process costs seconds here), and that message's id."""
    directory = tmp_path_factory.mktemp("reading")

    def outbox(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
        return subprocess.run([sys.executable, "-m", "outbox", *args], env=env, cwd=directory,
                              check=True, capture_output=True, text=True, timeout=60).stdout

    (directory / "outbox.toml").write_text(
        '[database]\nurl = "sqlite:///./outbox.db"\n[logging]\nfile = "outbox.log"\n'
        '[[relays]]\nname = "default"\nhost = "127.0.0.1"\nport = 2525\nsecurity = "none"\n')
    create_database(directory / "outbox.toml")  # as serve would
    message = outbox("send", "--from", "a@example.com", "--to", "b@example.net", "--subject",
                     "hi", "--text", "x", "--config", "outbox.toml").strip().splitlines()[-1]
    return directory, message


@pytest.mark.parametrize(("command", "expected"), [
    ("status ID", ("ID", "queued")),
    ("queue ls", ("ID", "queued")),
    ("relay ls", ("default", "127.0.0.1:2525")),
])
def test_commands_that_read_the_database_import_only_what_they_need(
        reading_database: tuple[Path, str], command: str, expected: tuple[str, ...]) -> None:
    directory, message = reading_database
    args = command.replace("ID", message).split()
    shown, imported = run_importtime(*args, "--config", "outbox.toml", cwd=directory)

    assert all(text.replace("ID", message) in shown for text in expected), shown
    assert {"outbox.store.sqlite", "sqlalchemy.dialects.sqlite"} <= imported  # it measures
    unwanted = [top for top in NOT_FOR_READING
                if any(name == top or name.startswith(f"{top}.") for name in imported)]
    assert not unwanted, unwanted
