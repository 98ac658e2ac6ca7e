"""The support bundle's second layer scrubs the secret query values of every configured
URL (password=, sslpassword=, access_token=, client_secret=, ...), not only the
passwords of their userinfo: wherever such a value turns up (a log line that echoed a
URL, an error string with it decoded), the bundle made by `outbox support-bundle` holds
none of it."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from outbox.config import Settings
from outbox.ops.bundle import configured_secrets
from outbox.secrets import url_secrets
from tests.ops.conftest import ConfigFactory, config_file
from tests.smtpd import closed_port
from tests.zygote import run as fork_run

QUERY_PASSWORD = "S3cr3tQ-7%21"  # as written in the URL; "S3cr3tQ-7!" decoded
ACCESS_TOKEN = "Acc3ssTk-Q5"
CLIENT_SECRET = "Cl13nt-S3c-8"
SECRETS = [QUERY_PASSWORD, "S3cr3tQ-7!", ACCESS_TOKEN, CLIENT_SECRET]


def test_secret_query_values_of_urls_are_not_in_the_bundle(
        tmp_path: Path, make_config: ConfigFactory) -> None:
    database = (f"postgresql://outbox@127.0.0.1:{closed_port()}/outbox"
                f"?password={QUERY_PASSWORD}&sslmode=disable")
    token_url = f"http://127.0.0.1:9/token?client_secret={CLIENT_SECRET}&access_token={ACCESS_TOKEN}"
    config = make_config(
        {"name": "o365", "host": "127.0.0.1", "port": closed_port(),
         "username": "box@example.test",
         "oauth2": {"token_url": token_url, "client_id": "cid", "client_secret": "cs-1234",
                    "refresh_token": "rt-1234"}},
        database={"url": database})
    path = config_file(tmp_path, config)
    Path(config["logging"]["file"]).write_text("\n".join(json.dumps(line) for line in (
        {"event": "cannot connect", "error": f"connect to {database} failed"},
        {"event": "login refused", "error": "password S3cr3tQ-7! rejected"},
        {"event": "token refresh failed", "url": token_url},
    )) + "\n")
    output = tmp_path / "bundle.zip"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}

    result = fork_run(["support-bundle", "-o", str(output), "--config", str(path)], env,
                      tmp_path)

    assert output.exists(), result.stderr
    with zipfile.ZipFile(output) as bundle:
        contents = {name: bundle.read(name) for name in bundle.namelist()}
    for name, data in contents.items():
        for secret in SECRETS:
            assert secret.encode() not in data, (name, secret)
    logs = contents["logs.txt"].decode()
    assert "?password=***&sslmode=disable" in logs  # scrubbed, not dropped
    assert "client_secret=***&access_token=***" in logs
    assert "password *** rejected" in logs
    assert "password=***" in contents["config.toml"].decode()


def test_configured_secrets_hold_each_secret_query_value(make_config: ConfigFactory) -> None:
    url = "postgresql://app:pw-77@db/outbox?sslpassword=k%2Bp&application_name=outbox"
    found = configured_secrets(Settings(**make_config(database={"url": url})))
    assert {"pw-77", "k%2Bp", "k+p"} <= found
    assert "outbox" not in found and "db" not in found
    assert url_secrets(url) == ["pw-77", "k%2Bp"]
