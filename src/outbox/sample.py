"""Render a commented TOML config from the settings models, so the sample and
the schema cannot drift apart."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr

from outbox.config import Settings
from outbox.units import format_duration

# What `make run` needs to work on one machine: a relay on loopback (nothing may
# listen there yet: mail then waits, deferred, with guidance) and a dev API key.
SAMPLE_VALUES: dict[str, Any] = {
    "auth": {"api_keys": [{"name": "dev", "key": "ob_dev_change_me", "scopes": ["send", "read"]}]},
    "relays": [{"name": "default", "host": "127.0.0.1", "port": 2525, "security": "none"}],
}

HEADER = """\
# Outbox configuration. Every key can be overridden by an environment variable
# OUTBOX_<SECTION>__<KEY>, e.g. OUTBOX_SERVER__BIND=0.0.0.0:8025.
# Durations: 30s, 5m, 1h, 3d. Sizes: 25MB (decimal), 20MiB (binary).
"""


def sample_config(values: dict[str, Any] | None = None) -> str:
    settings = Settings(**(SAMPLE_VALUES if values is None else values))
    lines = [HEADER]
    sections: list[str] = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, BaseModel | list) and name != "internal_domains":
            sections += _table(name, value)
        else:  # top-level keys must come before the first [section] in TOML
            lines += [f"# {field.description}" if field.description else "",
                      f"{name} = {_toml(value)}", ""]
    return "\n".join(lines + sections)


MASK = "***"
_SECRET_QUERY_WORDS = ("password", "secret", "token", "key")


def masked_config(settings: Settings) -> str:
    """The effective configuration as TOML with every secret replaced by `***`:
    secret values, a password in any URL (database, LDAP, ...), and the webhook
    URL's path and query (services like Slack put the credential there)."""
    return sample_config(masked_values(settings))


def masked_values(settings: Settings) -> dict[str, Any]:
    values: dict[str, Any] = _masked(settings.model_dump(mode="python"))
    if values["alerts"]["webhook_url"]:
        parts = urlsplit(values["alerts"]["webhook_url"])
        values["alerts"]["webhook_url"] = urlunsplit((parts.scheme, parts.netloc, MASK, "", ""))
    return values


def _masked(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return SecretStr(MASK) if value.get_secret_value() else value
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, str) and "://" in value:  # database, LDAP, token URLs
        return mask_url_password(value)
    return value


def mask_url_password(url: str) -> str:
    """`scheme://user:***@host/db`, and secret-looking query values masked;
    any other URL unchanged (character for character)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not parts.password and not any(_is_secret_name(k) for k, _ in pairs):
        return url
    netloc = parts.netloc
    if parts.password:
        credentials, _, host = netloc.rpartition("@")
        netloc = f"{credentials.split(':', 1)[0]}:{MASK}@{host}"
    query = urlencode([(k, MASK if _is_secret_name(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _is_secret_name(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_QUERY_WORDS)


def _table(name: str, value: Any) -> list[str]:
    lines: list[str] = []
    if isinstance(value, BaseModel):
            lines += _section(name, value)
    elif value:
        for item in value:
            lines += _section(name, item, array=True)
    elif name == "routes":
        lines += ["# [[routes]]                       # first match wins",
                  '# match = "*.internal.example"     # recipient domain glob',
                  '# relay = "internal"', ""]
    return lines


def _section(name: str, model: BaseModel, array: bool = False) -> list[str]:
    lines = [f"[[{name}]]" if array else f"[{name}]"]
    for key, field in type(model).model_fields.items():
        value = getattr(model, key)
        if value is None:
            continue
        comment = f"  # {field.description}" if field.description else ""
        lines.append(f"{key} = {_toml(value)}{comment}")
    lines.append("")
    return lines


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return json.dumps(format_duration(value))
    if isinstance(value, SecretStr):
        return json.dumps(value.get_secret_value())
    if isinstance(value, BaseModel):
        inner = ", ".join(f"{k} = {_toml(v)}" for k, v in value if v is not None)
        return "{ " + inner + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))
