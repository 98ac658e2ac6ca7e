"""`outbox contacts ...` and `outbox route explain`, run in-process on a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.created import create_database
from tests.processes import write_config
from typer.testing import CliRunner, Result

from outbox.cli import common
from outbox.cli.app import app
from outbox.errors import InputError

CSV = "Name,Email,Tags\nAnn Lee,ann@corp.test,ops\nAnn L,ANN@corp.test,vip\nBob,bob@x.test,\n"


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr(common, "configure_logging", lambda *_: None)  # keep this process's logging
    config = write_config(tmp_path / "outbox.toml", {
        "internal_domains": ["corp.test"],
        "database": {"url": f"sqlite:///{tmp_path}/outbox.db"},
        "relays": [{"name": "external", "host": "127.0.0.1", "port": 2525, "security": "none"},
                   {"name": "internal", "host": "127.0.0.1", "port": 2526, "security": "none",
                    "internal": True}],
        "routes": [{"match": "corp.test", "relay": "internal"}],
    })

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, [*args, "--config", str(config)])

    create_database(config)  # as serve would: no other command creates it
    return run


def test_import_prints_the_merge_report_and_dedupe_finds_nothing_left(
        outbox: object, tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text(CSV)
    run = outbox  # type: ignore[assignment]
    dry = run("contacts", "import", str(tmp_path / "people.csv"), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines()[0] == ("3 read, 2 added, 0 updated, 0 unchanged, 1 merged, "
                                          "0 removed, 0 skipped")
    assert "(nothing changed: this was a dry run)" in dry.output
    assert run("contacts", "list").output == ""

    assert run("contacts", "import", str(tmp_path / "people.csv")).exit_code == 0
    assert run("contacts", "list").output.splitlines() == [
        "1\tAnn Lee\tann@corp.test\tcsv  [ops, vip]", "2\tBob\tbob@x.test\tcsv"]
    assert run("contacts", "dedupe").output.startswith("2 read, 0 added, 0 updated")
    assert run("contacts", "suggest", "le").output == "Ann Lee <ann@corp.test>\tused 0x\n"


def test_groups_refuse_a_cycle(outbox: object) -> None:
    run = outbox  # type: ignore[assignment]
    assert run("contacts", "group", "Ops", "pager@x.test").exit_code == 0
    assert run("contacts", "group", "All", "group:Ops").output == "All: 1 member(s)\n"
    # The kind in any case, as the UI takes it (a stranger pass: GROUP:Ops was an address).
    assert run("contacts", "group", "Caps", "GROUP:Ops").output == "Caps: 1 member(s)\n"
    looped = run("contacts", "group", "Ops", "group:All")
    assert isinstance(looped.exception, InputError)
    assert "would contain itself: Ops > All > Ops" in looped.exception.message


def test_route_explain_prints_the_rule_and_the_verdict(outbox: object) -> None:
    run = outbox  # type: ignore[assignment]
    routed = run("route", "explain", "Ann <ann@corp.test>").output.splitlines()
    assert routed == [
        "domain: corp.test",
        "routes[0] match 'corp.test' -> internal: MATCHES",
        "relay: internal (routes[0]: match 'corp.test' is the first that matches)",
        "internal: yes, by internal_domains[0] ('corp.test')",
        "allowed: the relay may carry this recipient"]
    # The route misses the subdomain, the policy does not: explain shows the gap.
    sub = run("route", "explain", "ann@mail.corp.test").output.splitlines()
    assert sub[-1].startswith("HELD: internal_domains[0] ('corp.test') makes ann@mail.corp.test")
    held = run("route", "explain", "ann@corp.test", "--relay", "external").output
    assert "the client requested relay 'external'" in held
