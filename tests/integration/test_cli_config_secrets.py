"""`outbox config show` masks every secret, whether it comes from the file or from an
`OUTBOX_*` environment variable; `outbox config sample` never carries environment values
(issue 14, first day). Real `outbox` processes."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

from tests.processes import write_config
from tests.smtpd import closed_port
from tests.zygote import run as fork_run

FILE_SECRETS = {"relay-pass-F1", "client-secret-F2", "refresh-tok-F3", "ob_api_key_F4"}
ENV_SECRETS = {
    "OUTBOX_ALERTS__WEBHOOK_SECRET": "alert-hmac-E1",
    "OUTBOX_LIMITS__LINK_SECRET": "link-hmac-E2",
    "OUTBOX_LDAP__BIND_PASSWORD": "ldap-bind-E3",
    "OUTBOX_BOUNCES__SECRET": "verp-hmac-E4",
    "OUTBOX_BOUNCES__IMAP__PASSWORD": "imap-pass-E5",
    "OUTBOX_DATABASE__URL": "postgresql://outbox:db-pass-E6@127.0.0.1/outbox",
    "OUTBOX_AUTH__API_KEYS": json.dumps([{"name": "env", "key": "ob_env_key_E7",
                                          "scopes": ["send"]}]),
}


def outbox(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    return fork_run(list(args), {**base, **env}, cwd)


def test_config_show_masks_secrets_from_the_file_and_the_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path / "outbox.toml", {
        "relays": [{"name": "pw", "host": "smtp.example.test", "username": "u",
                    "password": "relay-pass-F1"},
                   {"name": "oauth", "host": "smtp.example.test", "username": "u",
                    "oauth2": {"token_url": "https://login.example.test/token",
                               "client_id": "outbox", "client_secret": "client-secret-F2",
                               "refresh_token": "refresh-tok-F3"}}],
        "auth": {"api_keys": [{"name": "app", "key": "ob_api_key_F4", "scopes": ["send"]}]},
    })
    result = outbox("config", "show", "--config", str(config), cwd=tmp_path, env=ENV_SECRETS)
    assert result.returncode == 0, result.stderr
    shown = result.stdout
    for secret in FILE_SECRETS | {"alert-hmac-E1", "link-hmac-E2", "ldap-bind-E3",
                                  "verp-hmac-E4", "imap-pass-E5", "db-pass-E6",
                                  "ob_env_key_E7"}:
        assert secret not in shown, f"{secret} printed by config show"
    assert 'webhook_secret = "***"' in shown and 'bind_password = "***"' in shown
    assert "postgresql://outbox:***@127.0.0.1/outbox" in shown


def test_config_sample_never_carries_environment_values(tmp_path: Path) -> None:
    env = {**ENV_SECRETS, "OUTBOX_SERVER__BIND": "0.0.0.0:9999"}
    with_env = outbox("config", "sample", cwd=tmp_path, env=env)
    without = outbox("config", "sample", cwd=tmp_path, env={})
    assert with_env.returncode == 0, with_env.stderr
    assert with_env.stdout == without.stdout
    assert "0.0.0.0:9999" not in with_env.stdout


def test_a_database_password_in_the_url_query_is_never_shown(tmp_path: Path) -> None:
    """libpq takes the password from the query too (?password=): the CLI's error and
    every file of the support bundle mask it, like `config show` does."""
    config = write_config(tmp_path / "outbox.toml", {"relays": [
        {"name": "default", "host": "127.0.0.1", "port": 2525, "security": "none"}]})
    url = (f"postgresql://outbox:user-pass-U1@127.0.0.1:{closed_port()}/outbox"
           "?sslmode=disable&password=QPASS_q9")
    env = {"OUTBOX_DATABASE__URL": url}
    listed = outbox("queue", "ls", "--config", str(config), cwd=tmp_path, env=env)
    assert listed.returncode != 0
    error = listed.stderr.strip()
    assert error.startswith("error: cannot open the database") and "\n" not in error
    assert "outbox:***@127.0.0.1" in error and "sslmode=disable&password=***:" in error
    bundle = tmp_path / "bundle.zip"
    made = outbox("support-bundle", "-o", str(bundle), "--config", str(config),
                  cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    with zipfile.ZipFile(bundle) as archive:
        files = {name: archive.read(name).decode() for name in archive.namelist()}
    assert "password=***" in files["queue.json"]
    for text in [listed.stdout, listed.stderr, made.stdout, made.stderr, *files.values()]:
        for secret in ("user-pass-U1", "QPASS_q9"):
            assert secret not in text
