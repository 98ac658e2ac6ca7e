"""The whole configuration: `Settings` (every section, the cross-section
rules) and how it is found and loaded.

`load_settings(path)` reads the TOML file (--config, then $OUTBOX_CONFIG,
then ./outbox.toml), lets `OUTBOX_<SECTION>__<KEY>` environment variables
override it, and raises `ConfigError` with one line naming the key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTBOX_", env_nested_delimiter="__",
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
        if not path.is_file():
            raise ConfigError(f"config file '{chosen}' does not exist",
                              hint="give an existing file with --config or OUTBOX_CONFIG")
        return path
    default = Path("outbox.toml")
    return default if default.is_file() else None


def load_settings(explicit: str | None = None) -> Settings:
    """The settings; relative file paths (the SQLite database, blob_dir, the log file, the
    key file) are made absolute from the config file's directory, not the current one
    (without a config file they stay relative to the current directory)."""
    path = find_config_path(explicit)
    values = _read_toml(path) if path else {}
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, path)) from None
    return anchor_paths(settings, path.resolve().parent) if path else settings


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
