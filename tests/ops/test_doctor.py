"""`outbox doctor` against real relays on loopback (the scripted SMTP server with
generated certificates): a healthy one, and each way a relay commonly breaks.
Each broken relay gives one fail line naming the check, with the catalogue's fix,
and the exit code says whether anything failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from outbox.config import load_settings
from outbox.core.guidance import describe, key_for_reply
from outbox.core.replies import parse_reply
from outbox.core.report import Condition
from outbox.errors import ConfigError
from outbox.ops.checks import Check, Report, Status
from outbox.service.diagnostics import doctor as run_doctor
from outbox.store.factory import open_store
from tests.oauth_smtpd import MAILBOX
from tests.ops.conftest import (
    STORED_REFRESH,
    ConfigFactory,
    OAuthRelay,
    ServerFactory,
    config_file,
    set_credentials,
    settings_of,
)
from tests.smtpd import closed_port

RelayFor = Callable[..., dict[str, Any]]
USER, PASSWORD = "mailer", "correct-horse-battery"
STEPS = ["dns", "connect", "greeting", "ehlo", "tls", "auth", "size"]


async def doctor(config: dict[str, Any]) -> Report:
    return await run_doctor(settings_of(config))


def relay_checks(report: Report, relay: str = "test") -> dict[str, Check]:
    prefix = f"relay {relay}: "
    return {c.name.removeprefix(prefix): c for c in report.checks if c.name.startswith(prefix)}


def the_failure(report: Report) -> Check:
    (failed,) = [c for c in report.checks if c.status is Status.FAIL]
    return failed


async def test_a_healthy_relay_passes_every_check(
        smtp_server: ServerFactory, relay_for: RelayFor, make_config: ConfigFactory) -> None:
    server = smtp_server(tls="starttls", auth=(USER, PASSWORD), size_limit=30_000_000)
    report = await doctor(make_config(relay_for(server, username=USER, password=PASSWORD)))

    checks = relay_checks(report)
    assert list(checks) == STEPS
    assert {name: c.status for name, c in checks.items()} == dict.fromkeys(STEPS, Status.PASS)
    assert checks["dns"].detail == "127.0.0.1 is 127.0.0.1"
    assert "STARTTLS" not in checks["ehlo"].detail and "AUTH" in checks["ehlo"].detail
    assert "TLSv1." in checks["tls"].detail and "days left" in checks["tls"].detail
    assert checks["auth"].detail == (f"logged in as {USER} with PLAIN, credentials: config "
                                     "file (no mail sent)")
    assert "30,000,000 bytes" in checks["size"].detail
    assert report.ok and report.exit_code == 0
    assert server.messages == [], "doctor never sends mail"
    assert [c.status for c in report.checks if not c.name.startswith("relay")] == [
        Status.PASS, Status.PASS, Status.PASS, Status.SKIP, Status.PASS, Status.PASS,
        Status.PASS, Status.PASS]  # database, schema, disk, clock (no source), queue x3, alerts


async def test_a_closed_port_fails_at_connect_with_the_refused_fix(
        relay_for: RelayFor, make_config: ConfigFactory) -> None:
    relay = {"name": "test", "host": "127.0.0.1", "port": closed_port(), "security": "starttls"}
    report = await doctor(make_config(relay))

    failure = the_failure(report)
    assert failure.name == "relay test: connect"
    assert failure.detail.startswith("Connection refused: ")
    assert failure.fix == describe(Condition.CONNECTION_REFUSED.value).next_step
    assert list(relay_checks(report)) == ["dns", "connect"], "later checks did not run"
    assert report.exit_code == 1


async def test_an_expired_certificate_fails_at_tls(
        smtp_server: ServerFactory, relay_for: RelayFor, make_config: ConfigFactory) -> None:
    server = smtp_server(tls="starttls", cert="expired")
    report = await doctor(make_config(relay_for(server)))

    failure = the_failure(report)
    assert failure.name == "relay test: tls"
    assert failure.detail.startswith("Relay's TLS certificate expired: certificate rejected")
    assert failure.fix == describe(Condition.TLS_CERT_EXPIRED.value).next_step
    assert [c.status for c in relay_checks(report).values()] == [Status.PASS] * 4 + [Status.FAIL]
    assert report.exit_code == 1


async def test_a_certificate_for_another_host_fails_at_tls(
        smtp_server: ServerFactory, relay_for: RelayFor, make_config: ConfigFactory) -> None:
    server = smtp_server(tls="implicit", cert="wrong_host")
    report = await doctor(make_config(relay_for(server)))

    failure = the_failure(report)
    assert failure.name == "relay test: tls"
    assert failure.detail.startswith("TLS certificate is for another name: ")
    assert failure.fix == describe(Condition.TLS_HOSTNAME_MISMATCH.value).next_step
    assert list(relay_checks(report)) == ["dns", "connect", "tls"], "implicit TLS comes first"
    assert report.exit_code == 1


async def test_a_wrong_password_fails_at_auth(
        smtp_server: ServerFactory, relay_for: RelayFor, make_config: ConfigFactory) -> None:
    server = smtp_server(tls="starttls", auth=(USER, PASSWORD))
    report = await doctor(make_config(relay_for(server, username=USER, password="wrong-pass")))

    failure = the_failure(report)
    assert failure.name == "relay test: auth"
    rejected = describe(key_for_reply(parse_reply(535, "5.7.8 Authentication credentials "
                                                  "invalid"), during_auth=True))
    assert rejected.kind == "auth"
    assert failure.detail == (f"{rejected.title}: 535 5.7.8 Authentication credentials invalid "
                              "(credentials: config file)")
    assert failure.fix == rejected.next_step
    assert "wrong-pass" not in json.dumps(report.as_dict())
    assert report.exit_code == 1


STORED = "stored credentials (outbox relay set-credentials)"


async def test_doctor_logs_in_with_stored_credentials_as_delivery_does(
        oauth_relay: OAuthRelay, make_config: ConfigFactory) -> None:
    """The token endpoint takes only the refresh token stored with `relay
    set-credentials`; the config file's is stale. Doctor uses the stored one."""
    config = make_config(oauth_relay.relay)
    await set_credentials(config, "oauthrelay", refresh_token=STORED_REFRESH)

    report = await doctor(config)

    auth = relay_checks(report, "oauthrelay")["auth"]
    assert (auth.status, auth.detail) == (Status.PASS, (
        f"logged in as {MAILBOX} with XOAUTH2, credentials: {STORED} (no mail sent)"))
    assert report.exit_code == 0
    assert oauth_relay.authority.accepted, "the relay saw the token of the stored credentials"
    shown = json.dumps(report.as_dict())
    assert not any(secret in shown for secret in oauth_relay.authority.secrets())
    assert STORED_REFRESH not in shown


async def test_doctor_keeps_a_refresh_token_the_provider_rotates(
        oauth_relay: OAuthRelay, make_config: ConfigFactory) -> None:
    """A provider that rotates refresh tokens forgets the old one: doctor saves the new
    one as delivery does, or delivery (and the next doctor) could not log in."""
    oauth_relay.authority.rotate = True
    config = make_config(oauth_relay.relay)
    await set_credentials(config, "oauthrelay", refresh_token=STORED_REFRESH)

    for _ in range(2):
        report = await doctor(config)
        assert relay_checks(report, "oauthrelay")["auth"].status is Status.PASS, report
    assert STORED_REFRESH not in oauth_relay.authority.refresh_tokens
    assert len(oauth_relay.authority.token_requests) == 2


async def test_doctor_tries_a_stored_password_the_config_file_does_not_have(
        smtp_server: ServerFactory, relay_for: RelayFor, make_config: ConfigFactory) -> None:
    """Delivery logs in with the stored password (and holds the relay's mail when the
    relay offers no AUTH); doctor says the same, not "no username and password"."""
    server = smtp_server()  # offers no AUTH
    config = make_config(relay_for(server, name="picky"))
    await set_credentials(config, "picky", username=USER, password=PASSWORD)

    report = await doctor(config)

    failure = the_failure(report)
    assert failure.name == "relay picky: auth"
    assert failure.detail.startswith(describe(Condition.AUTH_NOT_OFFERED.value).title)
    assert failure.detail.endswith(f"(credentials: {STORED})")
    assert failure.fix == describe(Condition.AUTH_NOT_OFFERED.value).next_step
    assert PASSWORD not in json.dumps(report.as_dict())


async def test_a_relay_without_starttls_fails_when_starttls_is_required(
        smtp_server: ServerFactory, relay_for: RelayFor, make_config: ConfigFactory) -> None:
    server = smtp_server()  # plain SMTP: EHLO offers no STARTTLS
    report = await doctor(make_config(relay_for(server, security="starttls")))

    failure = the_failure(report)
    assert failure.name == "relay test: tls"
    assert failure.detail.startswith(describe(Condition.STARTTLS_NOT_OFFERED.value).title)
    assert "never falls back to plaintext" in failure.detail
    assert failure.fix == describe(Condition.STARTTLS_NOT_OFFERED.value).next_step
    assert report.exit_code == 1


async def test_a_relay_marked_as_needing_attention_fails_its_state_check(
        smtp_server: ServerFactory, relay_for: RelayFor, make_config: ConfigFactory,
        database_url: str) -> None:
    store = await open_store(database_url)
    try:
        await store.relay_auth.set_relay_state(
            "test", "needs_attention", "535 5.7.8 bad credentials", "smtp.5.7.8",
            datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    finally:
        await store.close()
    report = await doctor(make_config(relay_for(smtp_server())))

    failure = the_failure(report)
    assert failure.name == "relay test: state"
    assert failure.detail == ("marked needs attention since 2030-01-01 12:00 UTC: "
                              "535 5.7.8 bad credentials; its mail is held")
    assert failure.fix == describe("smtp.5.7.8").next_step


async def test_a_missing_database_fails_and_is_not_created(
        tmp_path: Path, make_config: ConfigFactory) -> None:
    missing = tmp_path / "nowhere.db"
    report = await doctor(make_config(database={"url": f"sqlite:///{missing}"}))

    failure = the_failure(report)
    assert failure.name == "database"
    assert "does not exist yet" in failure.detail and "outbox serve" in failure.fix
    assert not missing.exists()
    assert not any(c.name.startswith("queue") for c in report.checks)


async def test_an_unmigrated_database_fails_the_schema_check(
        tmp_path: Path, make_config: ConfigFactory) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    report = await doctor(make_config(database={"url": f"sqlite:///{empty}"}))

    failure = the_failure(report)
    assert failure.name == "database schema"
    assert failure.detail.startswith("at revision none; this Outbox needs ")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "OUTBOX_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "outbox", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def test_the_cli_prints_a_table_and_exits_0_for_a_healthy_relay(
        tmp_path: Path, smtp_server: ServerFactory, relay_for: RelayFor,
        make_config: ConfigFactory) -> None:
    server = smtp_server(tls="starttls", auth=(USER, PASSWORD))
    path = config_file(tmp_path, make_config(relay_for(server, username=USER,
                                                       password=PASSWORD)))
    result = run_cli("doctor", "--config", str(path))

    assert result.returncode == 0, result.stdout + result.stderr
    for step in STEPS:
        assert f"relay test: {step}" in result.stdout
    assert "PASS" in result.stdout and "FAIL" not in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("OK: ")
    assert PASSWORD not in result.stdout + result.stderr


def test_the_cli_exits_1_with_the_fail_line_and_fix_and_gives_json(
        tmp_path: Path, smtp_server: ServerFactory, relay_for: RelayFor,
        make_config: ConfigFactory) -> None:
    good = smtp_server(tls="starttls")
    expired = smtp_server(tls="starttls", cert="expired")
    path = config_file(tmp_path, make_config(relay_for(good, name="good"),
                                             relay_for(expired, name="old")))

    result = run_cli("doctor", "--config", str(path))
    assert result.returncode == 1
    fix = describe(Condition.TLS_CERT_EXPIRED.value).next_step
    assert f"FAIL relay old: tls: {fix}" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("PROBLEMS FOUND: ")
    assert "Traceback" not in result.stderr

    as_json = run_cli("doctor", "--json", "--config", str(path))
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    assert body["ok"] is False and body["summary"]["fail"] == 1
    statuses = {c["name"]: c["status"] for c in body["checks"]}
    assert statuses["relay good: tls"] == "pass"
    assert statuses["relay old: tls"] == "fail"
    (old,) = [c for c in body["checks"] if c["name"] == "relay old: tls"]
    assert old["fix"] == fix


def test_a_webhook_without_its_secret_is_a_one_line_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[alerts]\nwebhook_url = "http://127.0.0.1:9/x"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(str(path))
    assert caught.value.message == (f"{path}: alerts: webhook_secret is required with "
                                    "webhook_url (receivers check the signature)")
