"""`outbox --help` starts without the heavy modules (SPEC §4: CLI start-up under 300 ms;
the figure itself comes from `bench/cli_startup.py`, never from a timed test): the HTTP
framework, the database layer, the SMTP libraries, the settings schema and the logging
stack load only when a command that needs them runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "aiosqlite", "asyncpg",
         "aiosmtpd", "aiosmtplib", "dkim", "httpx", "pydantic", "pydantic_settings",
         "structlog", "prometheus_client", "email_validator", "ldap3", "vobject", "asyncio")


def imported_modules(*args: str) -> set[str]:
    """The top-level packages a fresh `outbox ARGS` process imported (python -X importtime)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "outbox", *args],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("relay", "--help"),
                                  ("send", "--help")])
def test_help_does_not_import_heavy_modules(args: tuple[str, ...]) -> None:
    imported = imported_modules(*args)
    assert "typer" in imported  # the measurement itself works
    # Typer itself loads pydantic (typer._adapters) to show a sub-command's help.
    heavy = set(HEAVY) - ({"pydantic"} if len(args) > 1 else set())
    assert not imported & heavy, sorted(imported & heavy)
