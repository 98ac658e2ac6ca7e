"""From a fresh clone, `make run` starts the service and the README's curl example
queues a message."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import httpx

from tests.processes import TLS, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]


def readme_curl() -> str:
    """The first curl command in the README, joined from its continuation lines."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(curl .*?)\n```", text, re.S)
    assert block, "README has no curl example"
    return block.group(1).replace("\\\n", " ")


def test_make_run_from_a_fresh_clone_then_readme_curl_queues(tmp_path: Path) -> None:
    digest = hashlib.sha1((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    assert (REPO / ".venv" / f".installed-{digest}").exists(), (
        "run the suite through `make test`: this test reuses the venv that make installed")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    # Reuse this checkout's installed venv: the Makefile's stamp is keyed by pyproject's
    # content, so `make` sees it as installed and does not reinstall.
    os.symlink(REPO / ".venv", clone / ".venv")
    port = free_port()
    env = {**os.environ, "OUTBOX_SERVER__BIND": f"127.0.0.1:{port}"}
    log = open(tmp_path / "make-run.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", verify=TLS).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=90, message="make run to serve /healthz")
        assert (clone / "outbox.toml").is_file(), "make run should write a sample outbox.toml"
        # The venv is shared with the running suite: make must not reinstall into it.
        assert b"pip install" not in (tmp_path / "make-run.log").read_bytes()
        command = readme_curl().replace("127.0.0.1:8025", f"127.0.0.1:{port}")
        out = subprocess.run([*shlex.split(command), "-w", "\n%{http_code}"],
                             capture_output=True, text=True, check=True)
        body, status = out.stdout.rsplit("\n", 1)
        assert status == "202", out.stdout
        message = httpx.Response(202, content=body).json()
        assert message["status"] == "queued" and message["id"]
        # The sample relay is not listening: the service stays up and defers with guidance.
        key = re.search(r"Bearer (\S+?)'", command).group(1)  # type: ignore[union-attr]
        detail = wait_until(lambda: _deferred(port, key, message["id"]), timeout=30,
                            message="the message to be deferred")
        assert "refused" in (detail["recipients"][0]["guidance"] or "").lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


def _deferred(port: int, key: str, id: str) -> dict[str, object] | None:
    response = httpx.get(f"http://127.0.0.1:{port}/v1/messages/{id}",
                         headers={"Authorization": f"Bearer {key}"}, verify=TLS)
    body = response.json()
    return body if body["status"] == "deferred" else None
