"""`outbox dkim keygen|records` as a user runs them: a key file (0600) and its TXT record,
the record of a configured key matches what the signer's signatures verify against."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import dkim
import pytest
from tests.zygote import run as fork_run

from outbox.config import DkimSettings, load_settings
from outbox.delivery.dkim import DkimSigner


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return fork_run(list(args), dict(os.environ), os.getcwd())


async def test_keygen_then_records_then_a_signature_verifies(tmp_path: Path) -> None:
    entries = []
    for algorithm in ("rsa-sha256", "ed25519-sha256"):
        key = tmp_path / f"{algorithm}.pem"
        made = run("dkim", "keygen", "example.test", "--selector", algorithm[:3],
                   "--algorithm", algorithm, "-o", str(key))
        assert made.returncode == 0, made.stderr
        assert key.stat().st_mode & 0o777 == 0o600
        assert made.stdout.startswith(f"{algorithm[:3]}._domainkey.example.test. IN TXT")
        entries.append(made.stdout.split("\n", 1)[1])
        again = run("dkim", "keygen", "example.test", "--selector", "x", "-o", str(key))
        assert again.returncode == 1 and "exists already" in again.stderr
    config = tmp_path / "outbox.toml"
    config.write_text("".join(entries))
    listed = run("dkim", "records", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    records = dict(re.findall(r'^(\S+)\. IN TXT "(.+)"$', listed.stdout, re.MULTILINE))
    assert set(records) == {"rsa._domainkey.example.test", "ed2._domainkey.example.test"}

    settings = load_settings(str(config))
    signer = DkimSigner(DkimSettings(keys=settings.dkim.keys))
    signed = await signer.sign(b"From: a@example.test\r\nSubject: x\r\n\r\nhi\r\n",
                               "a@example.test", time.time())
    assert isinstance(signed, bytes)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name.decode().rstrip("."), "").encode() or None

    verifier = dkim.DKIM(signed)
    assert verifier.verify(idx=0, dnsfunc=dnsfunc) and verifier.verify(idx=1, dnsfunc=dnsfunc)


def test_a_bad_configured_key_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "outbox.toml"
    config.write_text('[[dkim.keys]]\ndomain = "example.test"\nselector = "s"\n'
                      'private_key = "nope"\n')
    listed = run("dkim", "records", "--config", str(config))
    assert listed.returncode == 1
    assert listed.stderr.count("\n") == 1 and "dkim.keys[0].private_key" in listed.stderr


@pytest.mark.parametrize(("args", "says"), [
    (("example.test", "--selector", "s1", "-o", "missing/x.pem"),
     "the directory missing does not exist"),
    (("example.test", "--selector", "s 1", "-o", "k.pem"), "--selector: 's 1' is not a DNS name"),
    (("", "--selector", "s9", "-o", "k.pem"), "'' is not a domain name"),
    (("bad domain", "--selector", "s9", "-o", "k.pem"), "'bad domain' is not a domain name"),
    (("example..test", "--selector", "s9", "-o", "k.pem"),
     "'example..test' is not a domain name"),
], ids=["missing directory", "selector with a space", "empty domain", "domain with a space",
        "empty label"])
def test_keygen_refuses_a_bad_name_or_path_in_one_line(
        tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    made = fork_run(["dkim", "keygen", *args], dict(os.environ), tmp_path)
    assert made.returncode == 1, made.stdout
    lines = made.stderr.strip().splitlines()
    assert len(lines) == 1, made.stderr
    assert lines[0].startswith(f"error: {says}")
    assert "pydantic" not in made.stderr and "Errno" not in made.stderr
    assert made.stdout == ""
    assert list(tmp_path.iterdir()) == [], "no key may be written"
