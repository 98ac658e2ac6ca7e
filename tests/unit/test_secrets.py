"""Secrets at rest (Fernet, the key and its file) and secret references in the
configuration; the pure parts of relay credentials and API keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from outbox.config import RelaySettings, load_settings
from outbox.delivery.credentials import apply_credentials, auth_kind, credentials_json
from outbox.errors import ConfigError, InputError
from outbox.secrets import KEY_ENV, SecretBox, default_key_file, open_box, resolve_reference
from outbox.service.keys import digest, new_key, parse_scopes
from outbox.service.relays import CredentialsUpdate, merge_credentials

# --- the box and its key --------------------------------------------------------------


def test_a_sealed_secret_opens_with_the_same_key_only() -> None:
    box = SecretBox.from_key(Fernet.generate_key())
    sealed = box.seal("hunter2 ✓")
    assert "hunter2" not in sealed
    assert box.open(sealed) == "hunter2 ✓"
    other = SecretBox.from_key(Fernet.generate_key())
    with pytest.raises(ConfigError, match="cannot be decrypted with this secret key"):
        other.open(sealed, "the stored credentials of relay 'default'")


def test_a_key_file_is_created_0600_next_to_the_sqlite_database_and_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    url = f"sqlite:///{tmp_path}/data/outbox.db"

    sealed = open_box(url).seal("secret")

    path = tmp_path / "data" / "outbox.db.key"
    assert default_key_file(url) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert open_box(url).open(sealed) == "secret"


def test_a_configured_key_file_wins_and_the_environment_wins_over_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    key_file = tmp_path / "keys" / "outbox.key"
    sealed = open_box("postgresql://db/outbox", str(key_file)).seal("secret")
    assert key_file.exists() and not (tmp_path / "outbox.db.key").exists()

    env_key = Fernet.generate_key().decode()
    monkeypatch.setenv(KEY_ENV, env_key)
    with pytest.raises(ConfigError):
        open_box("postgresql://db/outbox", str(key_file)).open(sealed)
    assert SecretBox.from_key(env_key).open(open_box("sqlite:///x.db").seal("s")) == "s"


def test_postgresql_without_a_key_is_a_one_line_config_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match="every node needs the same secret key") as caught:
        open_box("postgresql://db/outbox")
    assert KEY_ENV in caught.value.one_line() and "\n" not in caught.value.one_line()


def test_a_malformed_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "not-a-key")
    with pytest.raises(ConfigError, match=f"{KEY_ENV}: not a Fernet key"):
        open_box("sqlite:///x.db")


# --- references in the configuration ---------------------------------------------------


def test_env_and_file_references_resolve_and_literals_stay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOX_TEST_PW", "from-env")
    secret_file = tmp_path / "rt"
    secret_file.write_text("from-file\n")
    assert resolve_reference("env:OUTBOX_TEST_PW") == "from-env"
    assert resolve_reference(f"file:{secret_file}") == "from-file"
    assert resolve_reference("plain") == "plain"
    assert resolve_reference(SecretStr("env:X")) == SecretStr("env:X")


@pytest.mark.parametrize(("value", "words"), [
    ("env:OUTBOX_TEST_UNSET", "environment variable OUTBOX_TEST_UNSET"),
    ("env:", "needs a variable name"),
    ("file:/nonexistent/secret", "cannot read '/nonexistent/secret'"),
    ("file:", "needs a path"),
])
def test_a_broken_reference_says_which_key_and_why(tmp_path: Path, value: str,
                                                   words: str) -> None:
    config = tmp_path / "outbox.toml"
    config.write_text(f'[[relays]]\nname = "default"\nhost = "h"\nusername = "u"\n'
                      f'password = "{value}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(str(config))
    line = caught.value.one_line()
    assert f"{config}: relays[0].password: " in line and words in line
    assert "\n" not in line


def test_a_config_loads_secrets_through_references(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOX_TEST_CS", "client-secret")
    (tmp_path / "rt").write_text("refresh-token\n")
    config = tmp_path / "outbox.toml"
    config.write_text(
        '[[relays]]\nname = "default"\nhost = "h"\nusername = "u"\n'
        'oauth2 = { token_url = "https://t", client_id = "c", '
        f'client_secret = "env:OUTBOX_TEST_CS", refresh_token = "file:{tmp_path}/rt" }}\n')
    oauth2 = load_settings(str(config)).relays[0].oauth2
    assert oauth2 is not None
    assert oauth2.client_secret.get_secret_value() == "client-secret"
    assert oauth2.refresh_token.get_secret_value() == "refresh-token"


def test_a_relative_file_reference_is_read_from_the_config_files_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir, elsewhere = tmp_path / "conf", tmp_path / "run"
    config_dir.mkdir()
    elsewhere.mkdir()
    (config_dir / "relaypw.txt").write_text("beside-the-config\n")
    (elsewhere / "relaypw.txt").write_text("in-the-working-directory\n")
    config = config_dir / "outbox.toml"
    config.write_text('[[relays]]\nname = "default"\nhost = "h"\nusername = "u"\n'
                      'password = "file:relaypw.txt"\n')
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("OUTBOX_CONFIG", raising=False)

    relay = load_settings(str(config)).relays[0]

    assert relay.password.get_secret_value() == "beside-the-config"
    # without a config file, the current directory
    monkeypatch.setenv("OUTBOX_RELAYS", '[{"name": "default", "host": "h", "username": "u", '
                       '"password": "file:relaypw.txt"}]')
    relay = load_settings().relays[0]
    assert relay.password.get_secret_value() == "in-the-working-directory"
    assert resolve_reference("file:relaypw.txt") == "in-the-working-directory"


# --- credentials as values ----------------------------------------------------------------

PASSWORD_RELAY = RelaySettings(name="r", host="h", username="u", password=SecretStr("old"))
OAUTH_RELAY = RelaySettings(name="r", host="h", username="u", oauth2={
    "token_url": "https://t/token", "client_id": "c", "client_secret": "cs",
    "refresh_token": "rt"})


def test_a_new_password_replaces_the_old_and_round_trips_through_json() -> None:
    merged = merge_credentials(PASSWORD_RELAY, CredentialsUpdate(password="new"))
    assert (merged.username, merged.password.get_secret_value()) == ("u", "new")
    again = apply_credentials(PASSWORD_RELAY.model_copy(update={"password": SecretStr("")}),
                              credentials_json(merged))
    assert (again.username, again.password.get_secret_value(), auth_kind(again)) == (
        "u", "new", "password")


def test_a_refresh_token_keeps_the_configured_client_and_is_taken_literally() -> None:
    update = CredentialsUpdate(refresh_token="env:NOT_A_REFERENCE")
    merged = merge_credentials(OAUTH_RELAY, update)
    assert merged.oauth2 is not None
    assert merged.oauth2.refresh_token.get_secret_value() == "env:NOT_A_REFERENCE"
    assert (merged.oauth2.client_id, merged.oauth2.client_secret.get_secret_value()) == (
        "c", "cs")
    again = apply_credentials(OAUTH_RELAY, credentials_json(merged))
    assert again.oauth2 is not None
    assert again.oauth2.refresh_token.get_secret_value() == "env:NOT_A_REFERENCE"


@pytest.mark.parametrize(("relay", "update", "field"), [
    (PASSWORD_RELAY, CredentialsUpdate(), "password"),
    (PASSWORD_RELAY, CredentialsUpdate(password=""), "password"),
    (PASSWORD_RELAY, CredentialsUpdate(username=" ", password="p"), "username"),
    (PASSWORD_RELAY, CredentialsUpdate(refresh_token="rt"), "oauth2.token_url"),
    (OAUTH_RELAY, CredentialsUpdate(token_url="ftp://t"), "oauth2.token_url"),
])
def test_unusable_credentials_name_the_field(relay: RelaySettings, update: CredentialsUpdate,
                                             field: str) -> None:
    with pytest.raises(InputError) as caught:
        merge_credentials(relay, update)
    assert caught.value.field == field


# --- API keys -----------------------------------------------------------------------------


def test_new_keys_are_random_and_stored_as_sha256() -> None:
    one, two = new_key(), new_key()
    assert one != two and one.startswith("ob_") and len(one) > 40
    assert len(digest(one)) == 64 and one not in digest(one)


def test_scopes_come_from_lists_or_commas_in_a_fixed_order() -> None:
    assert parse_scopes(["read,send"]) == ("send", "read")
    assert parse_scopes(["admin", "send"]) == ("send", "admin")
    with pytest.raises(InputError, match="unknown scope 'root'"):
        parse_scopes(["send,root"])
    with pytest.raises(InputError, match="at least one scope"):
        parse_scopes([" , "])


def test_key_file_creation_never_widens_permissions_of_an_existing_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    key_file = tmp_path / "outbox.key"
    key_file.write_bytes(Fernet.generate_key())
    os.chmod(key_file, 0o400)
    open_box("sqlite:///x.db", str(key_file)).seal("s")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o400
