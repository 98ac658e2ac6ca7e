"""schemathesis against a real `outbox serve` (SQLite, real HTTP on loopback) with every
check, positive-data acceptance included: no 5xx, every response as documented, every
request the OpenAPI document calls valid accepted and every one it calls invalid refused,
405 with an exact `Allow` for undocumented methods.

The run is seeded and derandomized (same cases every time) and bounded per operation,
so it fits the suite's time. A failure shows schemathesis' own report: each failing
case with a `curl` line that reproduces it against any `outbox serve`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from tests.processes import API_KEY, TLS, OutboxProcess

SEED = 20261202
EXAMPLES_PER_OPERATION = 6
# One worker: with two threads, generating arbitrary JSON (metadata, batch items) failed
# inside hypothesis on CPython 3.11 with "SystemError: AST constructor recursion depth
# mismatch" (a thread-unsafe interpreter check, not the API).
# Excluded: revoking keys. The fuzzer's own key comes from the config file (it cannot be
# revoked over HTTP), but a generated name could revoke a key made by POST /v1/keys in
# the same run, which is no bug; 404 for unknown names is checked in tests/e2e.
# Excluded: adding suppressions. A generated address put on the list makes the
# generated messages to it 422 `suppressed` afterwards, by design (a state the document
# cannot describe); the suppression list has its own tests.
EXCLUDED = r"^/v1/keys/\{name\}$"
# What the document cannot say of one operation: POST /v1/messages/raw's bytes (the file).
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXCLUDED_OPERATIONS = ("POST /v1/suppressions",)


def run_schemathesis(server: OutboxProcess, report: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
        "run", f"{server.base_url}/openapi.json",
        "--header", f"Authorization: Bearer {API_KEY}",
        "--checks", "all", "--mode", "all",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(EXAMPLES_PER_OPERATION),
        "--seed", str(SEED), "--generation-deterministic",
        "--workers", "1", "--request-timeout", "20",
        "--exclude-path-regex", EXCLUDED,
        *[arg for name in EXCLUDED_OPERATIONS for arg in ("--exclude-name", name)],
        "--report", "junit", "--report-junit-path", str(report),
        "--no-color", "--output-truncate", "false",
    ]
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.api.fuzz_hooks",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          cwd=report.parent, env=env)


def failures(report: Path) -> dict[str, str]:
    """Operation → schemathesis' text for each operation that failed."""
    found: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problems = [node.text or node.get("message", "") for node in case
                    if node.tag in ("failure", "error")]
        if problems:
            found[case.get("name", "?")] = "\n".join(problems)
    return found


def operations_in(report: Path) -> set[str]:
    return {case.get("name", "?") for case in ET.parse(report).getroot().iter("testcase")}


def answered(server: OutboxProcess) -> dict[tuple[str, str], set[str]]:
    """(method, route) → status codes the server gave, from its own /metrics."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=10, verify=TLS).text
    codes: dict[tuple[str, str], set[str]] = {}
    for code, method, route in re.findall(
            r'outbox_api_requests_total\{code="(\d+)",method="([A-Z]+)",route="([^"]+)"\}',
            text):
        codes.setdefault((method, route), set()).add(code)
    return codes


@pytest.mark.long(45)
def test_schemathesis_finds_no_problem(server: OutboxProcess, tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    started = time.monotonic()
    result = run_schemathesis(server, report)
    elapsed = time.monotonic() - started
    assert report.exists(), result.stdout[-4000:] + result.stderr[-4000:]
    found = failures(report)
    assert not found, "\n\n".join(f"== {op}\n{text}" for op, text in found.items())
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]

    # Not a vacuous pass: every published operation was exercised, and the server
    # accepted requests (a wrong key would make every answer a documented 401).
    spec = httpx.get(f"{server.base_url}/openapi.json", timeout=10, verify=TLS).json()
    published = {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops
                 if not re.match(EXCLUDED, p)} - set(EXCLUDED_OPERATIONS)
    assert published <= operations_in(report)
    codes = answered(server)
    accepted = {op for op, seen in codes.items()
                if op[1].startswith("/v1/") and any(c.startswith("2") for c in seen)}
    assert len(accepted) >= 20, sorted(accepted)
    server_errors = {op: seen for op, seen in codes.items()
                     if op[1].startswith("/v1/") and any(c.startswith("5") for c in seen)}
    assert not server_errors, server_errors
    print(f"schemathesis: {len(published)} operations in {elapsed:.1f}s")
