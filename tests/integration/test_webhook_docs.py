"""docs/webhooks.md's verification examples, in Python and in Node.js, accept what
Outbox signs and refuse a changed body, another secret and an old timestamp."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from outbox.core import signing

DOC = (Path(__file__).parents[2] / "docs" / "webhooks.md").read_text()
SECRET = "whsec_docs_example_0123456789"
BODY = b'{"id":"evt_1","type":"sent","message":{"id":"m1"}}'
NODE_HARNESS = """
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const cases = JSON.parse(input);
  console.log(JSON.stringify(cases.map((c) =>
    verify(c.secret, c.headers, Buffer.from(c.body, "base64")))));
});
"""


def block(language: str) -> str:
    (found,) = re.findall(rf"```{language}\n(.*?)```", DOC, re.DOTALL)
    return str(found)


def cases() -> list[tuple[str, dict[str, str], bytes, bool]]:
    now = int(time.time())
    good = {"Outbox-Timestamp": str(now),
            "Outbox-Signature": signing.event_signature(SECRET, now, BODY)}
    old = {"Outbox-Timestamp": str(now - 600),
           "Outbox-Signature": signing.event_signature(SECRET, now - 600, BODY)}
    return [(SECRET, good, BODY, True), (SECRET, good, BODY + b" ", False),
            (SECRET + "x", good, BODY, False), (SECRET, old, BODY, False)]


def test_the_python_example_verifies_outbox_s_signature() -> None:
    namespace: dict[str, object] = {}
    exec(block("python"), namespace)
    verify = namespace["verify"]
    assert callable(verify)
    check: Callable[..., bool] = verify
    assert [check(secret, headers, body) for secret, headers, body, _ in cases()] == [
        expected for *_, expected in cases()]


def test_the_node_example_verifies_outbox_s_signature() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed (scripts/ensure-services.sh installs it)", pytrace=False)
    import base64

    payload = [{"secret": secret, "headers": {k.lower(): v for k, v in headers.items()},
                "body": base64.b64encode(body).decode()} for secret, headers, body, _ in cases()]
    run = subprocess.run([node, "-e", block("js") + NODE_HARNESS], input=json.dumps(payload),
                         capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(run.stdout) == [expected for *_, expected in cases()]
