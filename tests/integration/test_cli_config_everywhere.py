"""Every command takes --config (found by a stranger pass: `outbox config sample` and
`outbox dkim keygen` refused the option an operator passes to every command).
`config sample --config FILE` writes a new config there; `dkim keygen --config FILE`
refuses a selector that config already signs with."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from tests.zygote import run as fork_run

from outbox.cli.app import app
from outbox.cli.common import click_command


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name != "OUTBOX_CONFIG"}
    return fork_run(list(args), env, cwd)


def leaves(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if hasattr(command, "commands"):
        return [leaf for name, sub in command.commands.items()
                for leaf in leaves(sub, (*path, name))]
    return [(path, command)]


def test_every_command_takes_config() -> None:
    missing = [" ".join(path) for path, command in leaves(click_command(app))
               if "--config" not in {o for p in command.params for o in getattr(p, "opts", [])}]
    assert missing == []


def test_config_sample_writes_a_new_file_and_never_replaces_one(tmp_path: Path) -> None:
    target = tmp_path / "outbox.toml"

    made = run(tmp_path, "config", "sample", "--config", str(target))

    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"wrote {target}: a sample configuration")
    assert target.read_text() == run(tmp_path, "config", "sample").stdout
    assert tomllib.loads(target.read_text())["relays"][0]["name"] == "default"
    checked = run(tmp_path, "config", "show", "--config", str(target))
    assert checked.returncode == 0, checked.stderr

    target.write_text("# mine\n")
    again = run(tmp_path, "config", "sample", "-c", str(target))
    assert again.returncode == 1
    assert again.stderr == (f"error: {target} exists already; a sample never replaces a "
                            "config (name a new file, or run `outbox config sample` without "
                            "--config to print it)\n")
    assert target.read_text() == "# mine\n"


def test_config_reference_takes_config_and_is_the_same(tmp_path: Path) -> None:
    plain = run(tmp_path, "config", "reference")
    given = run(tmp_path, "config", "reference", "--config", str(tmp_path / "any.toml"))
    assert given.returncode == 0, given.stderr
    assert given.stdout == plain.stdout and plain.stdout.startswith("# Configuration reference")


def test_dkim_keygen_refuses_a_selector_its_config_signs_with(tmp_path: Path) -> None:
    config = tmp_path / "outbox.toml"
    # The configured key's file is gone (a reason to make a new key): no error for that.
    config.write_text('[[dkim.keys]]\ndomain = "Example.test"\nselector = "s2026"\n'
                      'private_key = "file:/gone/dkim.pem"\n')

    taken = run(tmp_path, "dkim", "keygen", "example.test", "--selector", "S2026",
                "-o", str(tmp_path / "new.pem"), "--config", str(config))
    assert taken.returncode == 1
    assert taken.stderr.startswith(f"error: --selector: {config} already has a key under "
                                   "selector 'S2026' for example.test (choose a new selector")
    assert taken.stderr.count("\n") == 1
    assert not (tmp_path / "new.pem").exists()

    fresh = run(tmp_path, "dkim", "keygen", "example.test", "--selector", "s2027",
                "-o", str(tmp_path / "new.pem"), "--config", str(config))
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.startswith("s2027._domainkey.example.test. IN TXT")

    by_default = run(tmp_path, "dkim", "keygen", "example.test", "--selector", "s2026",
                     "-o", str(tmp_path / "other.pem"))  # ./outbox.toml, as every command
    assert by_default.returncode == 1 and "already has a key" in by_default.stderr
    elsewhere = run(tmp_path / "..", "dkim", "keygen", "example.test", "--selector", "s2026",
                    "-o", str(tmp_path / "other.pem"))
    assert elsewhere.returncode == 0, elsewhere.stderr
