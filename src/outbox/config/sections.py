"""The configuration's sections: one pydantic model per TOML table, every field
with a default and a description, each model checking its own rules (a bad
value is one line naming the key). `config.settings` puts them together.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from outbox.config.units import parse_duration, parse_process_count, parse_size
from outbox.secrets import resolve_reference

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
ProcessCount = Annotated[int | Literal["auto"], BeforeValidator(parse_process_count)]
# A secret value, or a reference to one: "env:NAME" or "file:/path" (resolved at load).
Secret = Annotated[SecretStr, BeforeValidator(resolve_reference)]
Scope = Literal["send", "read", "admin", "contacts"]  # contacts: change the address book


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Bound(Protocol):
    bind: str


class ListenAddress:
    """`host` and `port` of a section's `bind = "host:port"` (an IPv6 host in brackets)."""

    @property
    def host(self: _Bound) -> str:
        return self.bind.rpartition(":")[0].strip("[]")

    @property
    def port(self: _Bound) -> int:
        return int(self.bind.rpartition(":")[2])


class ServerSettings(ListenAddress, Section):
    bind: str = Field("127.0.0.1:8025", description="host:port the HTTP API and UI listen on")
    public_url: str = Field("", description="base URL for links Outbox puts in mail; "
                            "empty: http://<bind>")
    max_connections: int = Field(1000, ge=1, description="client connections at once (also "
                                 "kept under the open-file limit); more get 503 with "
                                 "Retry-After and are closed")
    max_connections_per_client: int = Field(100, ge=1, description="connections at once "
                                            "from one client address; more get 503")
    header_timeout: Duration = Field(timedelta(seconds=10), description="a request's "
                                     "headers must arrive within this, else the connection "
                                     "is closed (slow-header clients)")
    body_timeout: Duration = Field(timedelta(seconds=30), description="a request body that "
                                   "sends nothing for this long is dropped")
    # Longer than the idle expiry of common HTTP clients and load balancers (httpx 5s,
    # aiohttp 15s, AWS ALB 60s), so that the client closes an idle connection first. At
    # 5s, equal to httpx's, a POST sent on a connection as Outbox closed it was reset
    # (httpx.ReadError, seen twice in bench/compare.py's http runs); nginx keeps 75s.
    keepalive_timeout: Duration = Field(timedelta(seconds=75), description="an idle "
                                        "keep-alive connection is closed after this; longer "
                                        "than clients' own idle expiry, so they close first")
    max_request_headers_size: Size = Field(65_536, ge=1024, description="request line and "
                                           "headers of one HTTP request; more get 431 and the "
                                           "connection is closed")

    @model_validator(mode="after")
    def _check_bind(self) -> ServerSettings:
        check_host_port(self.bind, "127.0.0.1:8025")
        for name in ("header_timeout", "body_timeout", "keepalive_timeout"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be more than 0s")
        return self


def check_host_port(bind: str, example: str) -> None:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bind '{bind}' must be host:port, like {example}")


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost, by the name alone; a wildcard (0.0.0.0, ::) is not."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DatabaseSettings(Section):
    url: str = Field("sqlite:///./outbox.db", description="sqlite:///./rel.db, "
                     "sqlite:////abs/path.db or postgresql://user@host/db; a PostgreSQL "
                     "on the same machine is cheaper to reach over its Unix socket: "
                     "postgresql://user@/db?host=/var/run/postgresql")
    pool_size: int = Field(10, ge=1, le=500, description="PostgreSQL: connections each "
                           "Outbox process keeps open, and as many more during bursts, plus "
                           "one for its liveness lock; keep processes x (2 x pool_size + 1) "
                           "under the server's max_connections. Not used with SQLite")

    @model_validator(mode="after")
    def _check_url(self) -> DatabaseSettings:
        if not self.url.startswith(("sqlite:", "postgresql:", "postgres:", "postgresql+")):
            raise ValueError(f"url '{self.url}' must start with sqlite:/// or postgresql://")
        return self


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    format: Literal["json", "console"] = Field("json", description="json lines or console")
    file: str = Field("", description="log file; empty: stderr")
    history: str = Field("", description="with file empty, a copy of the log kept for "
                         "`outbox support-bundle` (rotated at 10 MB, two old files kept): a "
                         "path; empty: outbox.log beside the SQLite database (none on "
                         "PostgreSQL); off: none")


class DeliverySettings(Section):
    on_uncertain: Literal["retry", "hold"] = Field(
        "retry", description="when the relay may have received a message but did not confirm: "
        "retry (same Message-ID) or hold for an operator")
    processes: ProcessCount = Field(
        "auto", description="`outbox worker` processes that serve starts, restarts and stops, "
        "to deliver on cores of their own while serve keeps one for HTTP; the second and "
        "later ones claim only while batch_size messages or more have been due for half a "
        "second (a backlog); a relay's max_connections is theirs together, shared fairly "
        "while more than one has mail for it; 0: serve delivers itself; auto: 2 where "
        "serve may use two cores or more, else 0")
    # Claims and results are written a batch per transaction, and a batch is as large as
    # the slots that came free: at 64 (bench/compare.py; the default was 16) they averaged
    # 21 messages, and the database's one writer, not SMTP, set the drain rate (issue 15).
    concurrency: int = Field(256, ge=1, description="messages delivered at once per worker "
                             "process (those beyond the relays' max_connections wait for a "
                             "session), holding about 256 MiB of text, HTML and embedded "
                             "files at most")
    batch_size: int = Field(128, ge=1, description="messages claimed per database round trip")
    lease: Duration = Field(timedelta(minutes=5), description="how long a claim of a process "
                            "that stopped answering (hung, paused) lasts before another worker "
                            "takes the message over; a process that died is noticed at once "
                            "(see sweep_interval)")
    sweep_interval: Duration = Field(timedelta(seconds=2), description="how often each "
                                     "worker looks for claims of processes that died (lock "
                                     "free) or whose lease expired, and puts them back")
    poll_interval: Duration = Field(timedelta(seconds=1), description="idle worker's "
                                    "longest sleep between looks at the queue (new mail wakes "
                                    "it at once, from any process)")
    connect_timeout: Duration = Field(timedelta(seconds=30), description="TCP + greeting")
    command_timeout: Duration = Field(timedelta(seconds=60), description="each SMTP command, "
                                      "and the longest DATA may go without the relay taking more "
                                      "of the message (then the attempt is deferred)")
    data_timeout: Duration = Field(timedelta(minutes=10), description="DATA, final reply")
    relay_backoff_first: Duration = Field(timedelta(seconds=10), description="a relay that "
                                          "fails as a whole waits this long, doubled after each "
                                          "failed probe; its mail spends no attempts meanwhile")
    relay_backoff_max: Duration = Field(timedelta(minutes=10), description="longest wait "
                                        "between probes of a relay that is down")
    messages_per_connection: int = Field(100, ge=1, description="then reconnect")
    idle_timeout: Duration = Field(timedelta(seconds=30), description="close idle sessions")
    shutdown_grace: Duration = Field(timedelta(seconds=20), description="on SIGTERM, wait "
                                     "this long for in-flight deliveries")
    helo_name: str = Field("", description="name sent in EHLO; empty: this host's FQDN")
    dedupe_message_id: bool = Field(True, description="a second submit of the same Message-ID "
                                    "by the same API key is answered like an idempotent replay "
                                    "(another message under it: 422 message_id_reused)")

    def processes_for(self, cores: int) -> int:
        """The delivery processes serve starts on a machine where it may use `cores`."""
        if self.processes == "auto":
            return 2 if cores >= 2 else 0
        return self.processes


def _default_scopes() -> list[Scope]:
    return ["send", "read"]


class ApiKey(Section):
    name: str = Field(description="who uses the key; also scopes its idempotency keys")
    key: Secret = Field(description="the bearer token clients send (Authorization: Bearer)")
    scopes: list[Scope] = Field(default_factory=_default_scopes, description="send, read, "
                                "contacts (change the address book), admin (everything)")
    requests_per_minute: int | None = Field(None, ge=0, description="API requests this key "
                                            "may make a minute; 0: unlimited; unset: [auth] "
                                            "requests_per_minute")
    messages_per_minute: int | None = Field(None, ge=0, description="messages this key may "
                                            "submit a minute; 0: unlimited; unset: [auth] "
                                            "messages_per_minute")


class AuthSettings(Section):
    api_keys: list[ApiKey] = Field(default_factory=list, description="who may call the API")
    idempotency_ttl: Duration = Field(timedelta(hours=24), description="how long keys are kept")
    requests_per_minute: int = Field(0, ge=0, description="default for keys that set none: "
                                     "API requests a key may make a minute, up to a minute's "
                                     "worth at once (then 429 with Retry-After); 0: unlimited")
    messages_per_minute: int = Field(0, ge=0, description="default for keys that set none: "
                                     "messages a key may submit a minute, up to a minute's "
                                     "worth at once; 0: unlimited")


class RetrySettings(Section):
    first_delay: Duration = Field(timedelta(seconds=60), description="then doubling, +-20 % jitter")
    max_delay: Duration = Field(timedelta(hours=1), description="cap on one wait")
    max_attempts: int = Field(20, ge=1, description="tries, the first included; not counted: "
                              "a try that held the message for an operator, or that a failure "
                              "of the whole relay stopped (refused, timed out, TLS, AUTH 4xx), "
                              "or that the relay answered \"slow down\" (421 or 4.7.x); that "
                              "mail waits for the relay up to max_age")
    max_age: Duration = Field(timedelta(days=3), description="give up this long after acceptance")


class OAuth2Settings(Section):
    token_url: str = Field(description="the provider's token endpoint (refresh_token grant)")
    client_id: str = Field(description="the OAuth2 client id registered with the provider")
    client_secret: Secret = Field(SecretStr(""), description="empty: none sent (public client)")
    refresh_token: Secret = Field(SecretStr(""), description="empty: give it later with "
                                  "`outbox relay set-credentials`")
    scope: str = Field("", description="scope asked for with each token; empty: none sent")
    authorize_url: str = Field("", description="the provider's authorization endpoint, for "
                               "\"Connect with OAuth2\" in the web UI (code flow with PKCE); "
                               "empty: give the refresh token with `outbox relay set-credentials`")


class RelaySettings(Section):
    name: str = Field(description="what routes, the API and `outbox relay` call this relay")
    host: str = Field(description="host name or IP address; also the name TLS verifies")
    port: int = Field(587, ge=1, le=65535, description="usually 587 (starttls), 465 (tls) or 25")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls: upgrade after EHLO, never falling back to "
        "plaintext; tls: TLS from the first byte; none: plaintext")
    username: str = Field("", description="account for SMTP AUTH; empty: no login (credentials "
                          "stored with `outbox relay set-credentials` take precedence)")
    password: Secret = Field(SecretStr(""), description="the account's password; not with oauth2")
    oauth2: OAuth2Settings | None = Field(None, description="log in with XOAUTH2 instead of "
                                          "a password")
    max_connections: int = Field(4, ge=1, description="sessions open at once, in use or "
                                 "idle: from the delivery processes of one serve together, "
                                 "or from one `outbox worker` started on its own")
    rate: str = Field("", pattern=r"^(\d+/[smh])?$", description="most messages this relay "
                      "takes, e.g. 600/m (per s, m or h), shared by every node; empty: no limit")
    tls_verify: bool = Field(True, description="check the relay's certificate and host name")
    ca_file: str = Field("", description="PEM file of a private CA, trusted besides the "
                         "system's; empty: system CAs only")
    internal: bool = Field(False, description="may carry mail for internal_domains")
    allow_insecure_auth: bool = Field(False, description="send AUTH without TLS (always "
                                      "allowed to a loopback host)")

    @property
    def rate_per_minute(self) -> int:
        if not self.rate:
            return 0
        count, unit = self.rate.split("/")
        return max(1, round(int(count) * {"s": 60, "m": 1, "h": 1 / 60}[unit]))

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
    relay: str = Field(description="name of the [[relays]] entry that carries matching mail")

    def matches(self, domain: str) -> bool:
        return fnmatch.fnmatchcase(domain.lower(), self.match.lower())


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
    keep_history: Duration = Field(timedelta(days=30), description="sent, failed and cancelled "
                                   "messages, with their events and SMTP transcripts, and "
                                   "cleared alerts are deleted this long after they finished; "
                                   "0s: kept forever")
    purge_every: Duration = Field(timedelta(minutes=5), description="how often workers look "
                                  "for history past keep_history and idempotency keys past "
                                  "[auth] idempotency_ttl")
    purge_batch: int = Field(500, ge=1, le=10_000, description="rows deleted per transaction "
                             "while purging (small: delivery's writes go in between)")


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


class DoctorSettings(Section):
    min_free_disk: Size = Field(1_000_000_000, description="fail below this much free disk "
                                "where the database and log live")
    certificate_warning: Duration = Field(timedelta(days=14), description="warn when a "
                                          "relay's certificate expires sooner")
    max_clock_skew: Duration = Field(timedelta(seconds=30), description="warn when this "
                                     "machine's clock is further off (fail past 5m)")
    deferred_warning: int = Field(100, ge=1, description="warn when this many messages "
                                  "are deferred")
