"""Configuration: one declarative schema, read from TOML and overridden by
`OUTBOX_<SECTION>__<KEY>` environment variables.

Every field has a default and a description; `sample_config()` is generated
from these models. A bad value stops start-up with one line naming the key.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from outbox.errors import ConfigError
from outbox.secrets import resolve_reference
from outbox.units import parse_duration, parse_size

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
# A secret value, or a reference to one: "env:NAME" or "file:/path" (resolved at load).
Secret = Annotated[SecretStr, BeforeValidator(resolve_reference)]
Scope = Literal["send", "read", "admin", "contacts"]  # contacts: change the address book


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    bind: str = Field("127.0.0.1:8025", description="host:port the HTTP API and UI listen on")
    public_url: str = Field("", description="base URL for links Outbox puts in mail; "
                            "empty: http://<bind>")

    @property
    def host(self) -> str:
        return self.bind.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.bind.rsplit(":", 1)[1])

    @model_validator(mode="after")
    def _check_bind(self) -> ServerSettings:
        host, sep, port = self.bind.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bind '{self.bind}' must be host:port, like 127.0.0.1:8025")
        return self


class DatabaseSettings(Section):
    url: str = Field("sqlite:///./outbox.db", description="sqlite:///./rel.db, "
                     "sqlite:////abs/path.db or postgresql://user@host/db")

    @model_validator(mode="after")
    def _check_url(self) -> DatabaseSettings:
        if not self.url.startswith(("sqlite:", "postgresql:", "postgres:", "postgresql+")):
            raise ValueError(f"url '{self.url}' must start with sqlite:/// or postgresql://")
        return self


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    format: Literal["json", "console"] = Field("json", description="json lines or console")
    file: str = Field("", description="log file; empty: stderr")


class DeliverySettings(Section):
    on_uncertain: Literal["retry", "hold"] = Field(
        "retry", description="when the relay may have received a message but did not confirm: "
        "retry (same Message-ID) or hold for an operator")
    concurrency: int = Field(16, ge=1, description="messages delivered at once per worker process")
    batch_size: int = Field(64, ge=1, description="messages claimed per database round trip")
    lease: Duration = Field(timedelta(minutes=5), description="how long a claim lasts "
                            "before another worker may take the message over")
    poll_interval: Duration = Field(timedelta(seconds=1), description="idle worker's "
                                    "longest sleep between looks at the queue")
    connect_timeout: Duration = Field(timedelta(seconds=30), description="TCP + greeting")
    command_timeout: Duration = Field(timedelta(seconds=60), description="each SMTP command")
    data_timeout: Duration = Field(timedelta(minutes=10), description="DATA, final reply")
    messages_per_connection: int = Field(100, ge=1, description="then reconnect")
    idle_timeout: Duration = Field(timedelta(seconds=30), description="close idle sessions")
    shutdown_grace: Duration = Field(timedelta(seconds=20), description="on SIGTERM, wait "
                                     "this long for in-flight deliveries")
    helo_name: str = Field("", description="name sent in EHLO; empty: this host's FQDN")
    dedupe_message_id: bool = Field(True, description="a second submit of the same Message-ID "
                                    "by the same API key is answered like an idempotent replay")


def _default_scopes() -> list[Scope]:
    return ["send", "read"]


class ApiKey(Section):
    name: str
    key: Secret
    scopes: list[Scope] = Field(default_factory=_default_scopes)


class AuthSettings(Section):
    api_keys: list[ApiKey] = Field(default_factory=list, description="[{name, key, scopes}]")
    idempotency_ttl: Duration = Field(timedelta(hours=24), description="how long keys are kept")


class RetrySettings(Section):
    first_delay: Duration = Field(timedelta(seconds=60), description="then doubling, +-20 % jitter")
    max_delay: Duration = Field(timedelta(hours=1), description="cap on one wait")
    max_attempts: int = Field(20, ge=1, description="every try counts, the first included")
    max_age: Duration = Field(timedelta(days=3), description="give up this long after acceptance")


class OAuth2Settings(Section):
    token_url: str
    client_id: str
    client_secret: Secret = SecretStr("")
    refresh_token: Secret = SecretStr("")  # may come later: `outbox relay set-credentials`
    scope: str = ""


class RelaySettings(Section):
    name: str
    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: Secret = SecretStr("")
    oauth2: OAuth2Settings | None = None
    max_connections: int = Field(4, ge=1)
    tls_verify: bool = True
    ca_file: str = ""
    internal: bool = False
    allow_insecure_auth: bool = False

    @property
    def has_credentials(self) -> bool:
        return bool(self.username) and (bool(self.password.get_secret_value()) or bool(self.oauth2))

    @model_validator(mode="after")
    def _check_auth(self) -> RelaySettings:
        if self.oauth2 and self.password.get_secret_value():
            raise ValueError("give either password or oauth2, not both")
        if self.oauth2 and not self.username:
            raise ValueError("oauth2 needs username (the mailbox to log in as)")
        if self.ca_file and not Path(self.ca_file).is_file():
            raise ValueError(f"ca_file '{self.ca_file}' does not exist")
        return self


class RouteSettings(Section):
    match: str = Field(description="recipient domain glob, like *.internal.example")
    relay: str

    def matches(self, domain: str) -> bool:
        return fnmatch.fnmatchcase(domain.lower(), self.match.lower())


class LimitsSettings(Section):
    max_message_size: Size = Field(25_000_000, description="encoded size on the wire")
    max_attachment_size: Size = Field(20_000_000, description="one attachment, decoded")
    blocked_extensions: list[str] = Field(
        default_factory=lambda: [".exe", ".bat", ".js", ".scr", ".com", ".cmd", ".vbs", ".msi"])
    extension_policy: Literal["block", "allow"] = Field(
        "block", description="block: refuse blocked_extensions; allow: refuse every file "
        "whose extension is not in allowed_extensions (content is checked in both modes)")
    allowed_extensions: list[str] = Field(default_factory=list, description="with "
                                          "extension_policy = \"allow\": the only extensions "
                                          "accepted, e.g. [\".pdf\", \".png\"]")
    link_threshold: Size = Field(0, description="attachments larger than this are sent as a "
                                 "signed download link served by Outbox (GET /d/...); 0: off")
    link_ttl: Duration = Field(timedelta(days=7), description="how long a download link works")
    link_secret: Secret = Field(SecretStr(""), description="HMAC key for download links; "
                                "empty: one is made and kept in the database")

    @model_validator(mode="after")
    def _check_links(self) -> LimitsSettings:
        if self.link_ttl <= timedelta(0):
            raise ValueError("link_ttl must be more than 0s")
        if self.extension_policy == "allow" and not self.allowed_extensions:
            raise ValueError("extension_policy \"allow\" needs allowed_extensions")
        return self


class StorageSettings(Section):
    blobs: Literal["filesystem", "database"] = Field(
        "filesystem", description="where attachment content is kept: files under blob_dir, or "
        "chunks in the database (several nodes on PostgreSQL without a shared disk)")
    blob_dir: str = Field("", description="directory for attachment files; empty: outbox-blobs "
                          "next to the SQLite database, else ./outbox-blobs")
    chunk_size: Size = Field(1_048_576, ge=4096, description="bytes per chunk in the database "
                             "(blobs = \"database\")")
    upload_ttl: Duration = Field(timedelta(hours=24), description="an upload no message uses "
                                 "is deleted after this")
    keep_finished: Duration = Field(timedelta(hours=24), description="attachments of a sent, "
                                    "failed or cancelled message are kept this long (for retry "
                                    "and resend), then deleted; 0s: at once")
    collect_every: Duration = Field(timedelta(minutes=10), description="how often workers "
                                    "delete attachments nothing uses any more")


class AlertSettings(Section):
    webhook_url: str = Field("", description="POST alerts here as signed JSON; empty: log only")
    webhook_secret: Secret = Field(SecretStr(""), description="HMAC-SHA256 key for the "
                                   "Outbox-Signature header; required with webhook_url")
    failure_ratio: float = Field(0.5, ge=0, le=1, description="alert when this share of a "
                                 "relay's attempts in the window did not deliver; 0: off")
    window: Duration = Field(timedelta(minutes=15), description="how far back failure ratios "
                             "and relay states look")
    min_attempts: int = Field(10, ge=1, description="attempts a relay needs in the window "
                              "before its failure ratio counts")
    oldest_queued_age: Duration = Field(timedelta(hours=1), description="alert when the oldest "
                                        "waiting message is older; 0: off")
    held_count: int = Field(1, ge=0, description="alert when this many messages are held; 0: off")
    evaluate_every: Duration = Field(timedelta(seconds=30), description="how often "
                                     "`outbox serve` checks the thresholds")
    webhook_timeout: Duration = Field(timedelta(seconds=10), description="per webhook request")

    @model_validator(mode="after")
    def _check_webhook(self) -> AlertSettings:
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url '{self.webhook_url}' must start with http:// "
                             "or https://")
        if self.webhook_url and not self.webhook_secret.get_secret_value():
            raise ValueError("webhook_secret is required with webhook_url (receivers check "
                             "the signature)")
        if self.evaluate_every <= timedelta(0):
            raise ValueError("evaluate_every must be more than 0s")
        return self


class SecretsSettings(Section):
    key_file: str = Field("", description="Fernet key for credentials stored in the database; "
                          "empty: $OUTBOX_SECRET_KEY, else <sqlite database>.key (made 0600)")


class LdapAttributes(Section):
    name: str = Field("cn", description="the contact's name")
    email: str = Field("mail", description="its addresses (every value)")
    tags: str = Field("", description="values kept as tags, e.g. ou; empty: none")
    id: str = Field("entryUUID", description="a stable id of the entry")
    changed: str = Field("modifyTimestamp", description="when the entry last changed "
                         "(GeneralizedTime), for incremental sync")


class LdapSettings(Section):
    url: str = Field("", description="ldap://host:389 or ldaps://host:636; empty: no sync")
    bind_dn: str = Field("", description="who to bind as; empty: anonymous")
    bind_password: Secret = Field(SecretStr(""), description="the bind DN's password")
    base_dn: str = Field("", description="where the people are, e.g. ou=people,dc=corp,dc=example")
    filter: str = Field("(&(objectClass=inetOrgPerson)(mail=*))", description="which entries "
                        "are contacts")
    attributes: LdapAttributes = Field(default_factory=LdapAttributes,
                                       description="entry attribute -> contact field")
    start_tls: bool = Field(False, description="upgrade ldap:// with StartTLS")
    timeout: Duration = Field(timedelta(seconds=10), description="connect and each operation")
    sync_interval: Duration = Field(timedelta(0), description="`outbox serve` syncs this often "
                                    "(incremental, full once a day); 0: only `outbox contacts "
                                    "sync-ldap`")

    @model_validator(mode="after")
    def _check_url(self) -> LdapSettings:
        if self.url and not self.url.startswith(("ldap://", "ldaps://")):
            raise ValueError(f"url '{self.url}' must start with ldap:// or ldaps://")
        if self.url and not self.base_dn:
            raise ValueError("base_dn is required with url")
        if self.filter and not (self.filter.startswith("(") and self.filter.endswith(")")):
            raise ValueError(f"filter '{self.filter}' must be in parentheses, like "
                             "(objectClass=inetOrgPerson)")
        return self


class DoctorSettings(Section):
    min_free_disk: Size = Field(1_000_000_000, description="fail below this much free disk "
                                "where the database and log live")
    certificate_warning: Duration = Field(timedelta(days=14), description="warn when a "
                                          "relay's certificate expires sooner")
    max_clock_skew: Duration = Field(timedelta(seconds=30), description="warn when this "
                                     "machine's clock is further off (fail past 5m)")
    deferred_warning: int = Field(100, ge=1, description="warn when this many messages "
                                  "are deferred")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTBOX_", env_nested_delimiter="__",
                                      extra="forbid", case_sensitive=False)

    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    relays: list[RelaySettings] = Field(default_factory=list)
    routes: list[RouteSettings] = Field(default_factory=list)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    doctor: DoctorSettings = Field(default_factory=DoctorSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    ldap: LdapSettings = Field(default_factory=LdapSettings)
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
    path = find_config_path(explicit)
    values = _read_toml(path) if path else {}
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, path)) from None


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
