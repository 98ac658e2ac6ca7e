"""`outbox users` as an operator runs it, on a real SQLite database: create, list (never a
hash), disable (sign-in refused), enable, set-password (the old one no longer works)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.created import create_database
from tests.zygote import run as fork_run

from outbox.config import load_settings
from outbox.errors import AuthError
from outbox.service import Outbox


def users(config: Path, *args: str, password: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    done = fork_run(["users", *args, "--config", str(config)], dict(os.environ), os.getcwd(),
                    input=None if password is None else password + "\n")
    assert done.returncode == 0, done.stderr
    return done


async def signs_in(config: Path, password: str) -> bool:
    outbox = await Outbox.open(load_settings(str(config)))
    try:
        await outbox.users.sign_in("vera", password, "127.0.0.1")
        return True
    except AuthError:
        return False
    finally:
        await outbox.close()


async def test_create_list_disable_enable_and_set_password(tmp_path: Path) -> None:
    config = tmp_path / "outbox.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/outbox.db"\n')
    create_database(config)  # as serve would: no other command creates it
    created = users(config, "create", "--name", "vera", "--role", "viewer",
                    "--password-stdin", password="first password 1")
    assert created.stdout.strip() == "UI user 'vera' created with role viewer"
    listed = users(config, "list").stdout
    assert listed.startswith("vera  viewer  created ") and listed.rstrip().endswith("active")
    assert "argon2" not in listed
    assert await signs_in(config, "first password 1")

    assert users(config, "disable", "vera").stdout.strip() == "UI user 'vera' disabled"
    assert "disabled " in users(config, "list").stdout
    assert not await signs_in(config, "first password 1")

    assert users(config, "enable", "vera").stdout.strip() == "UI user 'vera' enabled"
    assert await signs_in(config, "first password 1")

    changed = users(config, "set-password", "vera", "--password-stdin",
                    password="second password 2")
    assert changed.stdout.strip() == "password of UI user 'vera' changed"
    assert not await signs_in(config, "first password 1")
    assert await signs_in(config, "second password 2")


@pytest.fixture(autouse=True)
def _no_outbox_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OUTBOX_CONFIG", raising=False)
