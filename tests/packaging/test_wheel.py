"""The wheel installs and works in a clean virtual environment (issue 14: packaging).

How, and why this way:
- Tests reach no address but loopback, so the package index is not used here: `make test`
  fills `.venv/wheelhouse` with wheels of the build backend and of every runtime dependency
  in pyproject.toml (scripts/wheelhouse.sh), and pip runs with `--no-index --find-links`
  on it. The wheelhouse holds what pyproject.toml names, not this suite's environment.
- The wheel is built from a copy of pyproject.toml, README.md and src/ (so the checkout
  gets no build/ or egg-info) with `pip wheel --no-deps`, in pip's usual isolated build
  environment (setuptools from the wheelhouse).
- The venv is made with `python -m venv --without-pip`: nothing in it but Python, no
  `--system-site-packages`. This suite's pip installs into it (`pip --python VENV`), which
  saves the seconds `ensurepip` takes. The wheel goes in with its runtime dependencies
  resolved by pip from the wheelhouse, as `pip install outbox-*.whl` would from an index.
- Then, from the venv alone: `outbox --version`, `outbox config sample`, and a real send:
  the venv's `outbox serve` delivers a message posted to its API to an aiosmtpd sink, and
  the venv's `outbox status` reports it sent; the Dockerfile's HEALTHCHECK command, run by
  the venv's Python, passes against that server and fails where nothing listens.
Subprocesses get PYTHONPATH emptied (the suite's points at src/), and the test checks that
`outbox` is imported from the venv and that no dev tool is importable there."""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from outbox import __version__
from tests.processes import OutboxProcess, base_config, free_port, wait_until, write_config
from tests.smtpd import ScriptedServer

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"  # filled by scripts/wheelhouse.sh (make test)
OFFLINE = ("--no-index", "--find-links", str(WHEELHOUSE))
DEV_TOOLS = {"pytest", "mypy", "ruff", "playwright", "schemathesis", "hypothesis"}
CLEAN = {"PYTHONPATH": "", "PYTHONHOME": "", "OUTBOX_CONFIG": ""}


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTBOX_", "PYTHON"))}
    return {**env, **CLEAN}


def run(*argv: str | Path, timeout: float = 120) -> str:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                            timeout=timeout, env=clean_env())
    assert result.returncode == 0, f"{argv}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    assert WHEELHOUSE.is_dir(), f"{WHEELHOUSE} is missing: `make test` fills it"
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *OFFLINE, "-w", dist, source)
    [built] = dist.glob("outbox-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", root)
    run(sys.executable, "-m", "pip", "--python", root / "bin" / "python", "install", "-q",
        *OFFLINE, wheel, timeout=300)
    return root


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0].lower()


def test_wheel_depends_on_no_dev_tool_and_carries_every_package_file(wheel: Path) -> None:
    requires = metadata(wheel).get_all("Requires-Dist") or []
    runtime = {requirement_name(r) for r in requires if "extra ==" not in r}
    dev = {requirement_name(r) for r in requires if re.search(r"extra\s*==\s*['\"]dev", r)}
    assert "fastapi" in runtime and dev >= DEV_TOOLS  # the parse tells the two apart
    assert not runtime & DEV_TOOLS, runtime & DEV_TOOLS
    with zipfile.ZipFile(wheel) as archive:  # every file of the package, data included
        packed = {name for name in archive.namelist() if name.startswith("outbox/")}
    source = {path.relative_to(REPO / "src").as_posix()
              for path in (REPO / "src" / "outbox").rglob("*")
              if path.is_file() and "__pycache__" not in path.parts}
    assert source - packed == set()


def test_installed_wheel_runs_from_a_clean_venv(venv: Path) -> None:
    python, outbox = venv / "bin" / "python", venv / "bin" / "outbox"
    where = run(python, "-c", "import outbox; print(outbox.__file__)")
    assert where.startswith(str(venv)), where
    found = run(python, "-c", "import importlib.util as u; "
                f"print(sorted(n for n in {sorted(DEV_TOOLS)!r} if u.find_spec(n)))")
    assert found.strip() == "[]"
    assert run(outbox, "--version").strip() == f"outbox {__version__}"
    sample = tomllib.loads(run(outbox, "config", "sample"))
    assert sample["relays"][0]["name"] == "default" and sample["server"]["bind"]


def healthcheck(python: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK command, run by `python` against `base_url`."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    match = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.M)
    assert match, "the Dockerfile has no HEALTHCHECK ... CMD [...]"
    argv = [arg.replace("http://127.0.0.1:8025", base_url) for arg in json.loads(match[1])]
    assert argv[0] == "python"
    return subprocess.run([str(python), *argv[1:]], capture_output=True, text=True,
                          timeout=30, env=clean_env())


def test_dockerfile_healthcheck_fails_when_nothing_answers(venv: Path) -> None:
    assert healthcheck(venv / "bin" / "python", f"http://127.0.0.1:{free_port()}").returncode


def test_installed_wheel_serves_and_delivers(venv: Path, tmp_path: Path) -> None:
    with ScriptedServer() as sink:
        relay = {"name": "default", "host": "127.0.0.1", "port": sink.port, "security": "none"}
        config = base_config(tmp_path, f"sqlite:///{tmp_path}/outbox.db", [relay])
        process = OutboxProcess(write_config(tmp_path / "outbox.toml", config), config,
                                env=CLEAN, program=[str(venv / "bin" / "outbox")])
        process.start()
        try:
            with process.client() as client:
                answer = client.post("/v1/messages", json={
                    "from": "shop@example.test", "to": "ann@example.test",
                    "subject": "From the wheel", "text": "Installed and delivering."})
            assert answer.status_code == 202, answer.text
            wait_until(lambda: sink.messages, timeout=30, message="the sink to receive it")
            assert b"From the wheel" in sink.messages[0].data
            message_id = answer.json()["id"]
            status = wait_until(lambda: '"sent"' in (out := process.cli(
                "status", message_id, "--json").stdout) and out, timeout=15,
                message="outbox status to say sent")
            assert message_id in status
            check = healthcheck(venv / "bin" / "python", process.base_url)
            assert check.returncode == 0, check.stderr
        finally:
            process.stop()
