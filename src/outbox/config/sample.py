"""Render a commented TOML config from the settings models, so the sample and
the schema cannot drift apart.

Every key carries its field's description. A nested model is a table
(`[ldap.attributes]`, `[[auth.api_keys]]`, `[relays.oauth2]`); a table the
configuration leaves out (a list with no entry, an optional table) is shown as
a commented example entry, once, so every key appears with its description."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from outbox.config.settings import Settings
from outbox.config.units import format_duration
from outbox.secrets import MASK, mask_url_password

# What `make run` needs to work on one machine: a relay on loopback (nothing may
# listen there yet: mail then waits, deferred, with guidance) and a dev API key.
SAMPLE_VALUES: dict[str, Any] = {
    "auth": {"api_keys": [{"name": "dev", "key": "ob_dev_change_me", "scopes": ["send", "read"]}]},
    "relays": [{"name": "default", "host": "127.0.0.1", "port": 2525, "security": "none"}],
}

#: Values for the keys without a default, in the commented example entries.
EXAMPLES: dict[str, dict[str, Any]] = {
    "auth.api_keys": {"name": "ci", "key": "env:OUTBOX_CI_KEY", "requests_per_minute": 600,
                      "messages_per_minute": 100},
    "relays": {"name": "default", "host": "smtp.example.com"},
    "relays.oauth2": {"token_url": "https://login.example.com/oauth2/token",
                      "client_id": "outbox"},
    "routes": {"match": "*.internal.example", "relay": "internal"},
    "dkim.keys": {"domain": "example.com", "selector": "outbox1",
                  "private_key": "env:OUTBOX_DKIM_KEY"},
}

HEADER = """\
# Outbox configuration. Every key can be overridden by an environment variable
# OUTBOX_<SECTION>__<KEY>, e.g. OUTBOX_SERVER__BIND=0.0.0.0:8025.
# Durations: 30s, 5m, 1h, 3d. Sizes: 25MB (decimal), 20MiB (binary).
"""


class _FileOnlySettings(Settings):
    """`Settings` from the given values alone: the sample and the masked rendering are
    built from values already read, so the environment must not be read again (its
    `OUTBOX_*` values would land in the sample, and unmasked in `config show`)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   *_: PydanticBaseSettingsSource,
                                   **__: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def sample_config(values: dict[str, Any] | None = None) -> str:
    settings = _FileOnlySettings(**(SAMPLE_VALUES if values is None else values))
    lines = [HEADER]
    sections: list[str] = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        model = table_model(field.annotation)
        if model:
            sections += _tables(name, field, model, value)
        else:  # top-level keys must come before the first [section] in TOML
            lines += [_comment(field), f"{name} = {toml_value(value)}", ""]
    return "\n".join(lines + sections)


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


def table_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a field shown as a table: a model, an optional one, or a list of them."""
    if get_origin(annotation) is None:
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        return annotation if is_model else None
    for arg in get_args(annotation):
        model = table_model(arg)
        if model:
            return model
    return None


def _tables(path: str, field: FieldInfo, model: type[BaseModel], value: Any, *,
            examples: bool = True) -> list[str]:
    """The table(s) of one field; a commented example entry when there is none."""
    if isinstance(value, BaseModel):
        return [_comment(field), *_table(path, value)]
    if value:
        lines = [_comment(field)]
        for index, item in enumerate(value):  # nested examples once, not after every entry
            lines += _table(path, item, array=True, examples=examples and index == 0)
        return lines
    if not examples:
        return []
    return [_comment(field), *_example(path, model, array=isinstance(value, list))]


def _table(path: str, model: BaseModel, *, array: bool = False,
           examples: bool = True) -> list[str]:
    lines = [f"[[{path}]]" if array else f"[{path}]"]
    tables: list[str] = []  # in TOML a table's keys must come before its sub-tables
    for key, field in type(model).model_fields.items():
        value = getattr(model, key)
        nested = table_model(field.annotation)
        if nested:
            tables += _tables(f"{path}.{key}", field, nested, value, examples=examples)
        elif value is not None:
            lines.append(f"{key} = {toml_value(value)}{_note(field)}")
    return [*lines, "", *tables]


def _example(path: str, model: type[BaseModel], *, array: bool) -> list[str]:
    """A commented entry: each key with its default, or its value in EXAMPLES."""
    given = EXAMPLES.get(path, {})
    lines = [f"# [[{path}]]" if array else f"# [{path}]"]
    tables: list[str] = []
    for key, field in model.model_fields.items():
        nested = table_model(field.annotation)
        if nested:
            is_list = get_origin(field.annotation) is list
            tables += [_comment(field), *_example(f"{path}.{key}", nested, array=is_list)]
        else:
            value = given.get(key, field.get_default(call_default_factory=True))
            lines.append(f"# {key} = {toml_value(value)}{_note(field)}")
    return [*lines, "", *tables]


def _comment(field: FieldInfo) -> str:
    return f"# {field.description}" if field.description else ""


def _note(field: FieldInfo) -> str:
    return f"  # {field.description}" if field.description else ""


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return json.dumps(format_duration(value))
    if isinstance(value, SecretStr):
        return json.dumps(value.get_secret_value())
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))
