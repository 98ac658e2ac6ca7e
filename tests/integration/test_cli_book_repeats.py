"""`outbox contacts alias` and `outbox contacts group` keep a repeated address or member
once, as first spelt, as the API does (tests/api/test_book_repeats.py): the same
service call. Run in-process on a SQLite file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.created import create_database
from tests.processes import write_config
from typer.testing import CliRunner, Result

from outbox.cli import common
from outbox.cli.app import app


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.setattr(common, "configure_logging", lambda *_: None)  # this process's logging
    config = write_config(tmp_path / "outbox.toml", {
        "database": {"url": f"sqlite:///{tmp_path}/outbox.db"},
        "relays": [{"name": "default", "host": "127.0.0.1", "port": 2525, "security": "none"}],
    })
    create_database(config)  # as serve would: no other command creates it

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, [*args, "--config", str(config)])

    return run


def test_an_alias_and_a_group_with_repeats_keep_each_once(
        outbox: Callable[..., Result]) -> None:
    alias = outbox("contacts", "alias", "desk", "Desk <desk@example.test>", "ann@example.test",
                   "DESK@Example.Test")
    assert (alias.exit_code, alias.output) == (
        0, "desk -> Desk <desk@example.test>, ann@example.test\n")

    added = outbox("contacts", "add", "--name", "Dee", "--email", "dee@example.test")
    assert added.exit_code == 0, added.output
    contact = f"contact:{added.output.strip()}"
    group = outbox("contacts", "group", "Crew", "ann@example.test", contact,
                   "Ann@EXAMPLE.test", contact)
    assert (group.exit_code, group.output) == (0, "Crew: 2 member(s)\n")
