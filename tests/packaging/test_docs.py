"""The documentation stands alone and says only what exists (issue 14): the configuration
reference is the schema's own rendering, every `outbox ...` command (and flag) that
README.md or docs/*.md quotes is a command of the CLI, every link stays inside the
repository and points at a file that is there, and docs/api.md lists every route of the
OpenAPI snapshot with the scope the code requires."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest

from outbox.config.reference import reference_markdown, undescribed_keys
from tests.packaging.commands import check_command, cli, commands_in

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
# Files whose comments quote `outbox` commands (the commands they run are checked in
# test_deploy_files.py; their other lines name the `outbox` user and database).
DEPLOY = [REPO / "Dockerfile", REPO / "compose.yaml", REPO / "deploy/docker/outbox.toml",
          *sorted((REPO / "deploy/systemd").glob("*.service"))]


def test_the_pattern_finds_commands_and_not_file_names() -> None:
    text = ("run `outbox queue ls --status failed` then\n    outbox check --repair\n"
            "edit outbox.toml; `.venv/bin/outbox --help`; `outbox keys list | outbox keys "
            "revoke NAME`; `docker build -t outbox:local .`; "
            "`-v data:/var/lib/outbox outbox:local`")
    assert commands_in(text) == [["queue", "ls", "--status", "failed"], ["check", "--repair"],
                                 ["--help"], ["keys", "list"], ["keys", "revoke", "NAME"]]
    root = cli()
    assert check_command(root, ["queue", "ls", "--status", "failed"]) is None
    assert check_command(root, ["queue", "purge"]) == "`outbox queue` has no command 'purge'"
    assert check_command(root, ["check", "--fix"]) == "`outbox check` has no option --fix"


@pytest.mark.parametrize("page", PAGES + DEPLOY, ids=lambda page: page.name)
def test_every_quoted_command_exists(page: Path) -> None:
    root = cli()
    text = page.read_text()
    if page in DEPLOY:
        text = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    problems = [f"outbox {' '.join(words)}: {problem}"
                for words in commands_in(text)
                if (problem := check_command(root, words))]
    assert not problems, "\n".join(problems)


def test_configuration_reference_is_current() -> None:
    written = (REPO / "docs" / "configuration.md").read_text()
    assert written == reference_markdown(), (
        "docs/configuration.md is stale: run `outbox config reference > docs/configuration.md`")


def test_every_configuration_key_has_a_description() -> None:
    assert undescribed_keys() == []
    reference = reference_markdown()
    for table in ("[server]", "[[relays]]", "[relays.oauth2]", "[[auth.api_keys]]",
                  "[ldap.attributes]", "[bounces.imap]", "[[dkim.keys]]", "[ui]"):
        assert f"`{table}`" in reference
    for row in (line for line in reference.splitlines() if line.startswith("| `")):
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert len(cells) == 4 and all(cells), row  # key, type, default, description


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_links_stay_in_the_repository_and_resolve(page: Path) -> None:
    text = page.read_text()
    assert "shared/" not in text and "../../" not in text
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(REPO) and path.exists(), f"{page.name}: {target}"
    for named in re.findall(r"`(docs/[\w./-]+)`", text):  # README's `docs/x.md` mentions
        assert (REPO / named).exists(), f"{page.name}: {named}"


def test_readme_links_every_page_of_the_docs() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [page.name for page in DOCS if f"docs/{page.name}" not in readme]
    assert not missing, f"README.md does not link {missing}"


ROUTE_ROW = re.compile(r"^\| `([A-Z]+) (/v1/\S+)` \| (\w+) \|", re.M)


def required_scopes() -> dict[tuple[str, str], set[str]]:
    """(method, path) → the scopes its `require(...)` dependencies ask for, read from
    every router of outbox.api."""
    from fastapi.routing import APIRoute

    import outbox.api

    found: dict[tuple[str, str], set[str]] = {}
    for info in pkgutil.iter_modules(outbox.api.__path__):
        router = getattr(importlib.import_module(f"outbox.api.{info.name}"), "router", None)
        for route in getattr(router, "routes", []):
            if isinstance(route, APIRoute):
                # As documented: "{name:path}" (a name that may hold "/") is "{name}".
                path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
                for method in route.methods:
                    found[(method, path)] = scopes_of(route.dependant)
    return found


def scopes_of(dependant: Any) -> set[str]:
    scopes: set[str] = set()
    for dependency in dependant.dependencies:
        call = dependency.call
        if getattr(call, "__qualname__", "") == "require.<locals>.check":
            scopes |= {cell.cell_contents for cell in call.__closure__ or ()
                       if isinstance(cell.cell_contents, str)}
        scopes |= scopes_of(dependency)
    return scopes


def test_api_doc_lists_every_route_with_its_scope() -> None:
    rows = {(method, path): scope for method, path, scope in
            ROUTE_ROW.findall((REPO / "docs" / "api.md").read_text())}
    snapshot = json.loads((REPO / "docs" / "openapi-v1.json").read_text())["paths"]
    documented = {(method.upper(), path) for path, operations in snapshot.items()
                  for method in operations if path.startswith("/v1/")}
    assert set(rows) == documented
    scopes = required_scopes()
    wrong = {route: (scope, scopes.get(route)) for route, scope in rows.items()
             if scopes.get(route) != {scope}}
    assert not wrong, wrong
