"""Configuration: one declarative schema, read from TOML and overridden by
`OUTBOX_<SECTION>__<KEY>` environment variables.

    config.sections   one model per table ([server], [[relays]], ...), each field
                      with a default and a description
    config.settings   `Settings` (all sections, cross-section rules) and
                      `load_settings`: find the file, read it, one-line errors
    config.units      durations ("30s", "1h") and sizes ("25MB", "20MiB")
    config.sample     the commented sample config and `config show`, generated
                      from the models so they cannot drift apart

Every name used outside the package is importable from `outbox.config`.
"""

from outbox.config.integrations import (
    BounceSettings,
    DkimKey,
    DkimSettings,
    ImapSettings,
    LdapAttributes,
    LdapSettings,
    SuppressionSettings,
    UiSettings,
    WebhookSettings,
)
from outbox.config.limits import LimitsSettings
from outbox.config.sections import (
    AlertSettings,
    ApiKey,
    AuthSettings,
    DatabaseSettings,
    DeliverySettings,
    DoctorSettings,
    Duration,
    LoggingSettings,
    OAuth2Settings,
    RelaySettings,
    RetrySettings,
    RouteSettings,
    Scope,
    Secret,
    SecretsSettings,
    Section,
    ServerSettings,
    Size,
    StorageSettings,
    is_loopback_host,
)
from outbox.config.settings import (
    Settings,
    find_config_path,
    format_location,
    load_settings,
    log_history_path,
)
from outbox.config.submission import SubmissionSettings

__all__ = [
    "AlertSettings",
    "ApiKey",
    "AuthSettings",
    "BounceSettings",
    "DatabaseSettings",
    "DeliverySettings",
    "DkimKey",
    "DkimSettings",
    "DoctorSettings",
    "Duration",
    "ImapSettings",
    "LdapAttributes",
    "LdapSettings",
    "LimitsSettings",
    "LoggingSettings",
    "OAuth2Settings",
    "RelaySettings",
    "RetrySettings",
    "RouteSettings",
    "Scope",
    "Secret",
    "SecretsSettings",
    "Section",
    "ServerSettings",
    "Settings",
    "Size",
    "StorageSettings",
    "SubmissionSettings",
    "SuppressionSettings",
    "UiSettings",
    "WebhookSettings",
    "find_config_path",
    "format_location",
    "is_loopback_host",
    "load_settings",
    "log_history_path",
]
