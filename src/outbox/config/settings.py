"""The whole configuration: `Settings` (every section, the cross-section
rules) and how it is found and loaded.

`load_settings(path)` reads the TOML file (--config, then $OUTBOX_CONFIG,
then ./outbox.toml), lets `OUTBOX_<SECTION>__<KEY>` environment variables
override it, and raises `ConfigError` with one line naming the key, or the
variable: one whose section does not exist, or whose list or table is not JSON.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from outbox.config.integrations import (
    BounceSettings,
    DkimSettings,
    LdapSettings,
    SuppressionSettings,
    UiSettings,
    WebhookSettings,
)
from outbox.config.limits import LimitsSettings
from outbox.config.sections import (
    AlertSettings,
    AuthSettings,
    DatabaseSettings,
    DeliverySettings,
    DoctorSettings,
    LoggingSettings,
    RelaySettings,
    RetrySettings,
    RouteSettings,
    SecretsSettings,
    ServerSettings,
    StorageSettings,
)
from outbox.config.submission import SubmissionSettings
from outbox.errors import ConfigError
from outbox.secrets import references_from

ENV_PREFIX = "OUTBOX_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      extra="forbid", case_sensitive=False)

    server: ServerSettings = Field(default_factory=ServerSettings,
                                   description="the HTTP API and UI")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings,
                                       description="where the queue and all state are kept")
    logging: LoggingSettings = Field(default_factory=LoggingSettings,
                                     description="log level, format and destination")
    delivery: DeliverySettings = Field(default_factory=DeliverySettings,
                                       description="the worker: claims, sessions, SMTP timeouts")
    auth: AuthSettings = Field(default_factory=AuthSettings,
                               description="API keys and idempotency")
    retry: RetrySettings = Field(default_factory=RetrySettings,
                                 description="when deferred mail is tried again, and for how long")
    relays: list[RelaySettings] = Field(default_factory=list, description="SMTP relays mail "
                                        "leaves through; 'default' (else the first) takes "
                                        "mail no route matches")
    routes: list[RouteSettings] = Field(default_factory=list, description="recipient domain "
                                        "-> relay; first match wins")
    limits: LimitsSettings = Field(default_factory=LimitsSettings, description="message and "
                                   "attachment sizes and types, download links")
    alerts: AlertSettings = Field(default_factory=AlertSettings,
                                  description="the alert webhook and its thresholds")
    doctor: DoctorSettings = Field(default_factory=DoctorSettings,
                                   description="thresholds of `outbox doctor`")
    submission: SubmissionSettings = Field(default_factory=SubmissionSettings,
                                           description="the SMTP submission listener")
    storage: StorageSettings = Field(default_factory=StorageSettings,
                                     description="where attachment content is kept")
    secrets: SecretsSettings = Field(default_factory=SecretsSettings,
                                     description="the key that encrypts stored credentials")
    ldap: LdapSettings = Field(default_factory=LdapSettings,
                               description="contacts synced from an LDAP directory")
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings,
                                      description="delivery-event webhooks: SSRF policy, "
                                      "retries, endpoint disabling")
    bounces: BounceSettings = Field(default_factory=BounceSettings, description="bounces: "
                                    "VERP return paths, an SMTP listener, an IMAP mailbox")
    suppression: SuppressionSettings = Field(default_factory=SuppressionSettings,
                                             description="the suppression list at submit")
    dkim: DkimSettings = Field(default_factory=DkimSettings,
                               description="DKIM signing at delivery")
    ui: UiSettings = Field(default_factory=UiSettings, description="the web UI: sign-in, "
                           "sessions, its public address")
    internal_domains: list[str] = Field(default_factory=list, description="domain globs "
                                        "that only relays with internal = true may carry")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init values; the environment overrides it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _check_cross_references(self) -> Settings:
        names = [relay.name for relay in self.relays]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"relays: name '{duplicates[0]}' is used twice")
        for index, route in enumerate(self.routes):
            if route.relay not in names:
                raise ValueError(f"routes[{index}].relay: no relay is named '{route.relay}' "
                                 f"(known: {', '.join(names) or 'none'})")
        return self

    def relay(self, name: str) -> RelaySettings:
        for relay in self.relays:
            if relay.name == name:
                return relay
        raise KeyError(name)


def find_config_path(explicit: str | None) -> Path | None:
    """--config, then OUTBOX_CONFIG, then ./outbox.toml if it exists."""
    chosen = explicit or os.environ.get("OUTBOX_CONFIG")
    if chosen:
        path = Path(chosen)
        if path.is_dir():  # it was told it "does not exist" (a stranger pass)
            raise ConfigError(f"config file '{chosen}' is a directory",
                              hint=f"name the file in it, e.g. {path / 'outbox.toml'}")
        if not path.is_file():
            raise ConfigError(f"config file '{chosen}' does not exist",
                              hint="give an existing file with --config or OUTBOX_CONFIG")
        return path
    default = Path("outbox.toml")
    return default if default.is_file() else None


def load_settings(explicit: str | None = None) -> Settings:
    """The settings; relative file paths (the SQLite database, blob_dir, the log file, the
    key file, `file:` secret references) are taken from the config file's directory, not
    the current one (without a config file they stay relative to the current directory)."""
    path = find_config_path(explicit)
    values = _read_toml(path) if path else {}
    base = path.resolve().parent if path else None
    check_environment_names(os.environ)
    try:
        with references_from(base):
            settings = Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, path)) from None
    except SettingsError as exc:  # a list or table from the environment that is not JSON
        raise environment_error(os.environ, exc) from exc
    return anchor_paths(settings, base) if base else settings


def check_environment_names(environ: Mapping[str, str]) -> None:
    """pydantic-settings ignores `OUTBOX_<SECTION>__<KEY>` when there is no such section
    (and refuses a misspelt key): refuse both. Other OUTBOX_ variables are not settings."""
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        section, nested, key = name[len(ENV_PREFIX):].partition("__")
        if not nested:
            continue
        if section.lower() not in Settings.model_fields:
            guess = difflib.get_close_matches(section.lower(), Settings.model_fields, n=1)
            fix = f"; did you mean {ENV_PREFIX}{guess[0].upper()}__{key}?" if guess else ""
            raise ConfigError(f"{name}: no section '{section.lower()}'{fix}",
                              hint=f"{ENV_PREFIX}<SECTION>__<KEY> sets a key; "
                              "a variable that is not a setting needs a name without '__'")


def environment_error(environ: Mapping[str, str], exc: SettingsError) -> ConfigError:
    """The one line for the OUTBOX_ variable whose list or table is not valid JSON."""
    for name, value in sorted(environ.items()):
        kind, example = _json_shape(_env_annotation(name), value)
        if kind and not _is_json(value):
            return ConfigError(f"{name}: not valid JSON; this key takes {kind}, "
                               f"e.g. {name}='{example}'", hint="")
    return ConfigError(f"the environment: {exc}")


def _env_annotation(name: str) -> Any:
    """The type of the key `OUTBOX_<SECTION>__<KEY>` names; None when it names none."""
    if not name.upper().startswith(ENV_PREFIX):
        return None
    model: type[BaseModel] | None = Settings
    annotation: Any = None
    for part in name[len(ENV_PREFIX):].lower().split("__"):
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = _model(_optional(annotation))
    return annotation


def _json_shape(annotation: Any, value: str) -> tuple[str, str]:
    """("a list", an example) for a key given as JSON; ("", "") for any other."""
    annotation = _optional(annotation)
    item = _model(get_args(annotation)[0]) if get_args(annotation) else None
    if get_origin(annotation) in (list, set, frozenset, tuple) and item:
        fields = [n for n, f in item.model_fields.items() if f.is_required()]
        return "a list of tables", json.dumps([{name: "..." for name in fields}])
    if get_origin(annotation) in (list, set, frozenset, tuple):
        items = [part.strip() for part in value.split(",") if part.strip()]
        return "a list", json.dumps(items or ["..."])
    if get_origin(annotation) is dict or _model(annotation):
        return "a table", '{"key": "value"}'
    return "", ""


def _optional(annotation: Any) -> Any:
    """`X | None` → X; anything else unchanged."""
    if get_origin(annotation) in (Union, UnionType):
        args = [arg for arg in get_args(annotation) if arg is not NoneType]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _model(annotation: Any) -> type[BaseModel] | None:
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_model else None


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def anchor_paths(settings: Settings, base: Path) -> Settings:
    """`settings` with every relative file path made absolute from `base`."""
    settings.database.url = anchor_sqlite_url(settings.database.url, base)
    settings.storage.blob_dir = _anchor(settings.storage.blob_dir, base)
    settings.logging.file = _anchor(settings.logging.file, base)
    if settings.logging.history != "off":
        settings.logging.history = _anchor(settings.logging.history, base)
    settings.secrets.key_file = _anchor(settings.secrets.key_file, base)
    return settings


def log_history_path(settings: Settings) -> str:
    """Where the copy of the log for support bundles goes: `[logging] history`, else
    outbox.log beside the SQLite database; "" when `[logging] file` is the log already,
    history is off, or there is no local database to put it beside."""
    logging = settings.logging
    if logging.file or logging.history == "off":
        return ""
    if logging.history:
        return logging.history
    scheme, sep, rest = settings.database.url.partition(":///")
    database = rest.partition("?")[0]
    if not sep or not scheme.startswith("sqlite") or database in ("", ":memory:"):
        return ""
    return str(Path(database).parent / "outbox.log")


def anchor_sqlite_url(url: str, base: Path) -> str:
    """`sqlite:///./outbox.db` → `sqlite:////<base>/outbox.db`; any other URL unchanged."""
    scheme, sep, rest = url.partition(":///")
    if not sep or not scheme.startswith("sqlite"):
        return url
    database, qsep, query = rest.partition("?")
    if not database or database == ":memory:" or database.startswith("/"):
        return url
    return f"{scheme}:///{(base / database).resolve()}{qsep}{query}"


def _anchor(value: str, base: Path) -> str:
    if not value or value.startswith(("env:", "file:")) or Path(value).is_absolute():
        return value
    return str((base / value).resolve())


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _first_error(exc: ValidationError, path: Path | None) -> str:
    error = exc.errors()[0]
    location = format_location(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (check its spelling and section)"
    where = f"{path}: " if path else ""
    return f"{where}{location}: {message}" if location else f"{where}{message}"


def format_location(loc: tuple[Any, ...]) -> str:
    """('relays', 0, 'security') → 'relays[0].security'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
