"""Units (durations, sizes), the TOML + environment configuration, and the sample config."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from outbox.config import (
    ApiKey,
    DkimKey,
    OAuth2Settings,
    RelaySettings,
    RouteSettings,
    Settings,
    format_location,
    load_settings,
)
from outbox.config.sample import SAMPLE_VALUES, sample_config
from outbox.config.units import format_duration, parse_duration, parse_process_count, parse_size
from outbox.errors import ConfigError

# --- sizes -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "size"), [
    ("1MB", 1_000_000),
    ("1MiB", 1_048_576),
    ("25MB", 25_000_000),
    ("20MiB", 20 * 1_048_576),
    ("25mb", 25_000_000),
    ("1 GB", 1_000_000_000),
    ("1kB", 1_000),
    ("1KiB", 1_024),
    ("500KB", 500_000),
    ("2GiB", 2 * 1024**3),
    ("1TB", 10**12),
    ("1TiB", 2**40),
    ("0", 0),
    ("100", 100),
    ("100B", 100),
    (" 7 b ", 7),
    ("1.5KB", 1_500),
    ("1.1MB", 1_100_000),
    ("4.1GB", 4_100_000_000),
    ("1.005KB", 1_005),
    ("0.5KiB", 512),
    (4096, 4096),
])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "1XB", "1 M B", "-1MB", "1e3", "ten MB", "1MBs",
                                  "1.MB", True, None, -1, "1,000"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


@given(st.integers(0, 10**6), st.sampled_from([("KB", 10**3), ("MB", 10**6), ("GB", 10**9)]),
       st.integers(0, 999))
def test_decimal_sizes_with_three_decimals_are_exact(whole, unit, thousandths):
    suffix, factor = unit
    text = f"{whole}.{thousandths:03d}{suffix}"
    assert parse_size(text) == whole * factor + thousandths * factor // 1000


# --- durations -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "delta"), [
    ("60s", timedelta(seconds=60)),
    ("90", timedelta(seconds=90)),
    ("5m", timedelta(minutes=5)),
    ("5 M", timedelta(minutes=5)),
    ("1h", timedelta(hours=1)),
    ("3d", timedelta(days=3)),
    ("1w", timedelta(weeks=1)),
    ("250ms", timedelta(milliseconds=250)),
    ("1.5m", timedelta(seconds=90)),
    ("0.1s", timedelta(milliseconds=100)),
    (0, timedelta(0)),
    (30, timedelta(seconds=30)),
    (1.5, timedelta(seconds=1.5)),
    (timedelta(hours=2), timedelta(hours=2)),
])
def test_parse_duration(text, delta):
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "h", "1y", "-1s", "1 hour", "1h30m", True, None, -5,
                                  timedelta(seconds=-1)])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


# --- process counts ---------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "count"), [
    ("auto", "auto"), (" Auto ", "auto"), (0, 0), (1, 1), (64, 64), ("3", 3), (" 2 ", 2),
])
def test_parse_process_count(value, count):
    assert parse_process_count(value) == count


@pytest.mark.parametrize("value", [-1, 65, "many", "", "1.5", 1.5, True, None, "-2"])
def test_parse_process_count_refuses(value):
    with pytest.raises(ValueError, match=r"from 0 to 64, or \"auto\""):
        parse_process_count(value)


@pytest.mark.parametrize(("setting", "cores", "count"), [
    ("auto", 1, 0),  # one core: serve delivers itself, nothing to spread over
    # Serve keeps a core for HTTP; one delivery process takes the other, and a second
    # (nicer than serve, claiming only for backlogs) works through a backlog beside it.
    ("auto", 2, 2),
    ("auto", 8, 2),
    (0, 8, 0),
    (3, 1, 3),  # an explicit number is taken as given
])
def test_delivery_processes_for_the_cores(setting, cores, count):
    assert Settings(delivery={"processes": setting}).delivery.processes_for(cores) == count


def test_delivery_processes_default_to_auto():
    assert Settings().delivery.processes == "auto"


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(days=3), "3d"),
    (timedelta(hours=1), "1h"),
    (timedelta(minutes=90), "90m"),
    (timedelta(seconds=61), "61s"),
    (timedelta(0), "0s"),
    (timedelta(milliseconds=250), "250ms"),
    (timedelta(milliseconds=1500), "1500ms"),
])
def test_format_duration(delta, text):
    assert format_duration(delta) == text


@given(st.integers(0, 10**10))
def test_format_duration_parses_back(milliseconds):
    delta = timedelta(milliseconds=milliseconds)
    assert parse_duration(format_duration(delta)) == delta


# --- config files ----------------------------------------------------------------------------

RELAY = """
[[relays]]
name = "default"
host = "smtp.example.com"
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    """No OUTBOX_* variable of the machine running the tests leaks in, and no outbox.toml."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("OUTBOX_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "outbox.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def config_error(path: str | None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    line = info.value.message
    assert "\n" not in line and "\n" not in info.value.one_line()
    assert "Traceback" not in line
    return line


def test_defaults_without_any_file():
    settings = load_settings(None)
    assert settings == Settings()
    assert settings.server.bind == "127.0.0.1:8025"
    assert settings.database.url == "sqlite:///./outbox.db"
    assert settings.delivery.on_uncertain == "retry"
    assert settings.retry.first_delay == timedelta(seconds=60)
    assert settings.retry.max_delay == timedelta(hours=1)
    assert settings.retry.max_attempts == 20
    assert settings.retry.max_age == timedelta(days=3)
    assert settings.limits.max_message_size == 25_000_000
    assert settings.limits.max_attachment_size == 20_000_000
    assert {".exe", ".bat", ".js", ".scr"} <= set(settings.limits.blocked_extensions)
    assert settings.relays == []


def test_full_file_from_the_spec(tmp_path):
    path = write(tmp_path, """
[server]
bind = "0.0.0.0:9025"
[database]
url = "sqlite:////var/lib/outbox/outbox.db"
[logging]
level = "debug"
format = "console"
file = ""
[delivery]
on_uncertain = "hold"
[auth]
api_keys = [{ name = "app", key = "ob_secret", scopes = ["send", "read"] }]
[retry]
first_delay = "30s"
max_delay = "2h"
max_attempts = 7
max_age = "1d"
[[relays]]
name = "default"
host = "smtp.example.com"
port = 587
security = "starttls"
username = "me"
password = "pw"
max_connections = 2
tls_verify = true
internal = false
[[relays]]
name = "internal"
host = "mx.internal.example"
port = 465
security = "tls"
internal = true
username = "svc"
oauth2 = { token_url = "https://login.example/token", client_id = "c", refresh_token = "r" }
[[routes]]
match = "*.internal.example"
relay = "internal"
[limits]
max_message_size = "10MB"
max_attachment_size = "5MiB"
blocked_extensions = [".exe"]
""")
    settings = load_settings(path)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 9025
    assert settings.logging.format == "console"
    assert settings.delivery.on_uncertain == "hold"
    assert settings.auth.api_keys[0].key.get_secret_value() == "ob_secret"
    assert settings.retry.first_delay == timedelta(seconds=30)
    assert settings.retry.max_delay == timedelta(hours=2)
    assert settings.retry.max_attempts == 7
    assert settings.retry.max_age == timedelta(days=1)
    assert [r.name for r in settings.relays] == ["default", "internal"]
    assert settings.relay("internal").oauth2 is not None
    assert settings.relay("internal").has_credentials
    assert settings.relay("default").password.get_secret_value() == "pw"
    assert "pw" not in repr(settings)
    assert "ob_secret" not in repr(settings)
    assert settings.routes[0].matches("a.internal.example")
    assert not settings.routes[0].matches("internal.example")
    assert settings.limits.max_message_size == 10_000_000
    assert settings.limits.max_attachment_size == 5 * 1_048_576


def test_outbox_config_variable_names_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "[retry]\nmax_attempts = 3\n", "elsewhere.toml")
    monkeypatch.setenv("OUTBOX_CONFIG", path)
    assert load_settings(None).retry.max_attempts == 3


def test_explicit_config_wins_over_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("OUTBOX_CONFIG", write(tmp_path, "[retry]\nmax_attempts = 3\n", "a.toml"))
    explicit = write(tmp_path, "[retry]\nmax_attempts = 4\n", "b.toml")
    assert load_settings(explicit).retry.max_attempts == 4


def test_outbox_toml_in_the_working_directory_is_read(tmp_path):
    write(tmp_path, "[retry]\nmax_attempts = 9\n")
    assert load_settings(None).retry.max_attempts == 9


# --- environment overrides -------------------------------------------------------------------

def test_environment_overrides_a_key_of_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "[retry]\nmax_attempts = 5\nfirst_delay = \"30s\"\n")
    monkeypatch.setenv("OUTBOX_RETRY__MAX_ATTEMPTS", "7")
    settings = load_settings(path)
    assert settings.retry.max_attempts == 7
    assert settings.retry.first_delay == timedelta(seconds=30)  # the rest of the section stays


@pytest.mark.parametrize(("name", "value", "read"), [
    ("OUTBOX_RETRY__MAX_ATTEMPTS", "3", lambda s: s.retry.max_attempts == 3),
    ("outbox_retry__max_attempts", "4", lambda s: s.retry.max_attempts == 4),
    ("OUTBOX_RETRY__MAX_AGE", "12h", lambda s: s.retry.max_age == timedelta(hours=12)),
    ("OUTBOX_LIMITS__MAX_MESSAGE_SIZE", "5MiB",
     lambda s: s.limits.max_message_size == 5 * 1_048_576),
    ("OUTBOX_SERVER__BIND", "0.0.0.0:8080", lambda s: s.server.port == 8080),
    ("OUTBOX_DELIVERY__ON_UNCERTAIN", "hold", lambda s: s.delivery.on_uncertain == "hold"),
    ("OUTBOX_DELIVERY__PROCESSES", "2", lambda s: s.delivery.processes == 2),
    ("OUTBOX_DELIVERY__PROCESSES", "auto", lambda s: s.delivery.processes == "auto"),
    ("OUTBOX_DATABASE__URL", "postgresql://u@db/outbox",
     lambda s: s.database.url == "postgresql://u@db/outbox"),
])
def test_environment_overrides_without_a_file(monkeypatch, name, value, read):
    monkeypatch.setenv(name, value)
    assert read(load_settings(None))


@pytest.mark.parametrize(("name", "value", "key"), [
    ("OUTBOX_RETRY__MAX_ATTEMPTS", "many", "retry.max_attempts"),
    ("OUTBOX_RETRY__MAX_ATTEMPTS", "0", "retry.max_attempts"),
    ("OUTBOX_RETRY__FIRST_DELAY", "soon", "retry.first_delay"),
    ("OUTBOX_LIMITS__MAX_MESSAGE_SIZE", "big", "limits.max_message_size"),
    ("OUTBOX_DELIVERY__PROCESSES", "all", "delivery.processes"),
    ("OUTBOX_RETRY__BOGUS", "1", "retry.bogus"),
])
def test_a_bad_environment_value_names_the_key(monkeypatch, name, value, key):
    monkeypatch.setenv(name, value)
    assert config_error(None).startswith(f"{key}: ")


@pytest.mark.parametrize(("name", "value", "line"), [
    ("OUTBOX_WEBHOOKS__ALLOWED_NETWORKS", "127.0.0.1/32",
     "OUTBOX_WEBHOOKS__ALLOWED_NETWORKS: not valid JSON; this key takes a list, "
     """e.g. OUTBOX_WEBHOOKS__ALLOWED_NETWORKS='["127.0.0.1/32"]'"""),
    ("OUTBOX_INTERNAL_DOMAINS", "corp.test, *.lab.test",
     "OUTBOX_INTERNAL_DOMAINS: not valid JSON; this key takes a list, "
     """e.g. OUTBOX_INTERNAL_DOMAINS='["corp.test", "*.lab.test"]'"""),
    ("OUTBOX_AUTH__API_KEYS", "not json",
     "OUTBOX_AUTH__API_KEYS: not valid JSON; this key takes a list of tables, "
     """e.g. OUTBOX_AUTH__API_KEYS='[{"name": "...", "key": "..."}]'"""),
    ("OUTBOX_RELAYS", "smtp.example.test",
     "OUTBOX_RELAYS: not valid JSON; this key takes a list of tables, "
     """e.g. OUTBOX_RELAYS='[{"name": "...", "host": "..."}]'"""),
])
def test_a_list_from_the_environment_that_is_not_json_names_the_variable(
        monkeypatch, name, value, line):
    monkeypatch.setenv(name, value)
    assert config_error(None) == line


@pytest.mark.parametrize(("name", "line"), [
    ("OUTBOX_RETRYY__MAX_ATTEMPTS",
     "OUTBOX_RETRYY__MAX_ATTEMPTS: no section 'retryy'; did you mean "
     "OUTBOX_RETRY__MAX_ATTEMPTS?"),
    ("OUTBOX_NOTHING__LIKE_IT", "OUTBOX_NOTHING__LIKE_IT: no section 'nothing'"),
])
def test_an_unknown_section_in_the_environment_is_refused_naming_the_variable(
        monkeypatch, name, line):
    monkeypatch.setenv(name, "7")
    assert config_error(None) == line


def test_outbox_variables_that_are_not_settings_stay_allowed(tmp_path, monkeypatch):
    for name in ("OUTBOX_DEBUG", "OUTBOX_SECRET_KEY", "OUTBOX_PARENT_PID",
                 "OUTBOX_TEST_SOMETHING", "OUTBOX_CI_KEY"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("OUTBOX_CONFIG", write(tmp_path, "[retry]\nmax_attempts = 5\n"))
    monkeypatch.setenv("OUTBOX_RETRY__FIRST_DELAY", "30s")
    settings = load_settings(None)
    assert settings.retry.max_attempts == 5
    assert settings.retry.first_delay == timedelta(seconds=30)


# --- one-line errors naming the key ----------------------------------------------------------

@pytest.mark.parametrize(("text", "start", "words"), [
    (RELAY + 'security = "ssl"\n', "relays[0].security: ", "'starttls', 'tls' or 'none'"),
    (RELAY + "port = 70000\n", "relays[0].port: ", "65535"),
    (RELAY + "prot = 25\n", "relays[0].prot: ", "unknown key"),
    ("[retry]\nmax_atempts = 5\n", "retry.max_atempts: ", "unknown key"),
    ("[retry]\nfirst_delay = \"soon\"\n", "retry.first_delay: ", "is not a duration"),
    ("[retry]\nmax_attempts = 0\n", "retry.max_attempts: ", "greater than or equal to 1"),
    ("[limits]\nmax_message_size = \"25 megs\"\n", "limits.max_message_size: ", "not a size"),
    ("[limits]\nmax_message_size = -1\n", "limits.max_message_size: ", "not a size"),
    ("[retry]\nfirst_delay = -5\n", "retry.first_delay: ", "not a duration"),
    ("bogus = 1\n", "bogus: ", "unknown key"),
    ("[bogus]\nx = 1\n", "bogus: ", "unknown key"),
    ("[server]\nbind = \"localhost\"\n", "server: ", "host:port"),
    ("[server]\nbind = \"localhost:0\"\n", "server: ", "host:port"),
    ("[database]\nurl = \"mysql://x\"\n", "database: ", "sqlite:/// or postgresql://"),
    ("[logging]\nformat = \"xml\"\n", "logging.format: ", "'json' or 'console'"),
    ("[delivery]\non_uncertain = \"drop\"\n", "delivery.on_uncertain: ", "'retry' or 'hold'"),
    ("[auth]\napi_keys = [{ name = \"a\", key = \"k\", scopes = [\"root\"] }]\n",
     "auth.api_keys[0].scopes[0]: ", "'send', 'read', 'admin' or 'contacts'"),
    (RELAY + RELAY, "relays: ", "name 'default' is used twice"),
    (RELAY + '[[routes]]\nmatch = "*.x"\nrelay = "internal"\n', "routes[0].relay: ",
     "no relay is named 'internal' (known: default)"),
    ('[[routes]]\nmatch = "*.x"\nrelay = "internal"\n', "routes[0].relay: ", "known: none"),
    (RELAY + 'username = "u"\npassword = "p"\n'
     'oauth2 = { token_url = "https://t", client_id = "c", refresh_token = "r" }\n',
     "relays[0]: ", "either password or oauth2, not both"),
    (RELAY + 'oauth2 = { token_url = "https://t", client_id = "c", refresh_token = "r" }\n',
     "relays[0]: ", "oauth2 needs username"),
    (RELAY + 'username = "u"\noauth2 = { token_url = "https://t", client_id = "c", '
     'refresh_token = "env:OUTBOX_TEST_NEVER_SET" }\n',
     "relays[0].oauth2.refresh_token: ", "variable OUTBOX_TEST_NEVER_SET (from 'env:"),
    (RELAY + 'ca_file = "/nonexistent/ca.pem"\n', "relays[0]: ", "does not exist"),
    ('[[relays]]\nname = "x"\n', "relays[0].host: ", "Field required"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, text, start, words):
    path = write(tmp_path, text)
    line = config_error(path)
    assert line.startswith(f"{path}: {start}"), line
    assert words in line


def test_secret_values_never_appear_in_config_errors(tmp_path):
    path = write(tmp_path, RELAY + 'username = "u"\npassword = "hunter2-secret"\n'
                 'oauth2 = { token_url = "https://t", client_id = "c", refresh_token = "tok" }\n')
    assert "hunter2-secret" not in config_error(path)


def test_bad_toml_is_one_line(tmp_path):
    path = write(tmp_path, "[retry\nmax_attempts = 5\n")
    line = config_error(path)
    assert line.startswith(f"{path}: not valid TOML: ")
    assert "line 1" in line


def test_missing_config_file_is_one_line(tmp_path):
    line = config_error(str(tmp_path / "nope.toml"))
    assert line == f"config file '{tmp_path / 'nope.toml'}' does not exist"


def test_a_directory_given_as_the_config_file_is_named_as_one(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(str(tmp_path))
    assert info.value.message == f"config file '{tmp_path}' is a directory"
    assert info.value.hint == f"name the file in it, e.g. {tmp_path / 'outbox.toml'}"


def test_missing_file_named_by_outbox_config(tmp_path, monkeypatch):
    monkeypatch.setenv("OUTBOX_CONFIG", str(tmp_path / "gone.toml"))
    assert "gone.toml' does not exist" in config_error(None)


def test_config_error_has_a_hint():
    with pytest.raises(ConfigError) as info:
        load_settings("/nonexistent/outbox.toml")
    assert info.value.hint
    assert info.value.one_line().endswith(f"({info.value.hint})")


def test_unreadable_bytes_are_one_line(tmp_path):
    path = tmp_path / "outbox.toml"
    path.write_bytes(b"[retry]\nmax_attempts = \xff\n")
    line = config_error(str(path))
    assert line.startswith(f"{path}: ")


@pytest.mark.parametrize(("loc", "text"), [
    (("relays", 0, "security"), "relays[0].security"),
    (("retry", "max_attempts"), "retry.max_attempts"),
    (("auth", "api_keys", 2, "scopes", 0), "auth.api_keys[2].scopes[0]"),
    ((), ""),
])
def test_format_location(loc, text):
    assert format_location(loc) == text


# --- the sample config -----------------------------------------------------------------------

def test_sample_config_parses_back_into_the_same_settings():
    text = sample_config()
    assert Settings(**tomllib.loads(text)) == Settings(**SAMPLE_VALUES)


def test_sample_config_as_a_file_loads(tmp_path):
    settings = load_settings(write(tmp_path, sample_config()))
    assert settings.relays[0].name == "default"
    assert settings.auth.api_keys[0].name == "dev"


def test_sample_config_shows_every_section_and_how_to_override():
    text = sample_config()
    for section in ("[server]", "[database]", "[logging]", "[delivery]", "[auth]", "[retry]",
                    "[[relays]]", "[limits]", "# [[routes]]"):
        assert section in text
    assert "OUTBOX_<SECTION>__<KEY>" in text
    assert 'first_delay = "1m"' in text


def test_sample_of_a_rich_config_parses_back():
    values = {
        "delivery": {"poll_interval": "250ms", "lease": "90s", "on_uncertain": "hold"},
        "retry": {"first_delay": "1500ms", "max_age": "36h"},
        "relays": [
            {"name": "default", "host": "smtp.example.com", "username": "u",
             "oauth2": {"token_url": "https://t", "client_id": "c", "refresh_token": "r"}},
            {"name": "internal", "host": "mx.internal.example", "internal": True,
             "username": "svc", "password": 'p"q\\x'},
        ],
        "routes": [{"match": "*.internal.example", "relay": "internal"}],
        "internal_domains": ["*.internal.example"],
        "limits": {"max_message_size": "10MiB", "blocked_extensions": [".exe", ".js"]},
    }
    expected = Settings(**values)
    assert Settings(**tomllib.loads(sample_config(values))) == expected
    dumped = expected.model_dump(mode="python")
    assert Settings(**tomllib.loads(sample_config(dumped))) == expected


# --- every key is described ------------------------------------------------------------------

def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        for field in annotation.model_fields.values():
            yield from _models_in(field.annotation)
    for arg in get_args(annotation):
        yield from _models_in(arg)


SETTINGS_MODELS = set(_models_in(Settings))


def test_the_walk_reaches_nested_and_listed_models():
    assert {ApiKey, RelaySettings, OAuth2Settings, RouteSettings} <= SETTINGS_MODELS


@pytest.mark.parametrize("model", sorted(SETTINGS_MODELS, key=lambda m: m.__name__),
                         ids=lambda m: m.__name__)
def test_every_settings_field_has_a_description(model: type[BaseModel]):
    missing = [name for name, field in model.model_fields.items()
               if not (field.description or "").strip()]
    assert not missing, f"{model.__name__}: no description for {', '.join(missing)}"


@pytest.mark.parametrize("values", [None, {}], ids=["sample", "defaults"])
def test_every_key_in_the_sample_carries_its_description(values):
    lines = sample_config(values).splitlines()
    first_table = next(i for i, line in enumerate(lines) if line.startswith("["))
    keys = [i for i, line in enumerate(lines) if re.match(r"(# )?\w+ = ", line)]
    assert len(keys) > 50
    # top-level keys have no table to share a line with: their description is the line above
    assert [lines[i] for i in keys if i < first_table and not lines[i - 1].startswith("# ")] == []
    assert [lines[i] for i in keys
            if i > first_table and "  # " not in lines[i].split(" = ", 1)[1]] == []


EXAMPLE_MODELS = {"auth.api_keys": ApiKey, "relays": RelaySettings,
                  "relays.oauth2": OAuth2Settings, "routes": RouteSettings,
                  "dkim.keys": DkimKey}


@pytest.mark.parametrize("values", [None, {}], ids=["sample", "defaults"])
def test_tables_left_out_are_commented_examples_that_validate(values, monkeypatch):
    monkeypatch.setenv("OUTBOX_CI_KEY", "ob_ci_example")  # the api key example is a reference
    monkeypatch.setenv("OUTBOX_DKIM_KEY", "pem")  # and so is the DKIM key example
    text = sample_config(values)
    blocks = re.findall(r"^# \[\[?([\w.]+)\]\]?\n((?:# \w+ = .*\n)+)", text, re.MULTILINE)
    missing = {"auth.api_keys", "relays", "routes"} if values == {} else {"routes"}
    assert {path for path, _ in blocks} == missing | {"relays.oauth2", "dkim.keys"}
    for path, body in blocks:
        model = EXAMPLE_MODELS[path]
        entry = tomllib.loads("".join(line[2:] for line in body.splitlines(keepends=True)))
        assert set(entry) == {k for k, f in model.model_fields.items()
                              if not set(_models_in(f.annotation))}
        model(**entry)
