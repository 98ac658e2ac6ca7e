"""The configuration of integrations: `[webhooks]` (delivery-event webhooks),
`[bounces]` (VERP return paths, the bounce listener, `[bounces.imap]`),
`[suppression]`, `[dkim]` (signing keys by domain) and `[ui]` (the web UI). Rate limits are keys of
`[auth]` and of each API key (config.sections)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from outbox.config.sections import Duration, ListenAddress, Secret, Section, is_loopback_host


class WebhookSettings(Section):
    allowed_networks: list[str] = Field(default_factory=list, description="networks (CIDR) "
                                        "endpoints may be on although they are loopback, private "
                                        "or link-local, e.g. [\"10.0.0.0/8\"]; anything else "
                                        "non-public is refused (SSRF)")
    timeout: Duration = Field(timedelta(seconds=10), description="per request: connect, "
                              "send and the receiver's answer")
    first_delay: Duration = Field(timedelta(seconds=1), description="wait after a failed "
                                  "delivery, then doubling, +-20 % jitter")
    max_delay: Duration = Field(timedelta(hours=1), description="cap on one wait")
    max_age: Duration = Field(timedelta(days=3), description="give up on an event this long "
                              "after it happened")
    disable_after_failures: int = Field(20, ge=0, description="an endpoint is disabled (with "
                                        "an alert) after this many failed requests in a row "
                                        "...; 0: never")
    disable_after: Duration = Field(timedelta(hours=24), description="... that went on for "
                                    "at least this long")
    concurrency: int = Field(8, ge=1, description="requests in flight at once per process")
    max_batch: int = Field(100, ge=1, le=1000, description="most events an endpoint that "
                           "batches gets in one request")
    poll_interval: Duration = Field(timedelta(milliseconds=500), description="how often an "
                                    "idle process looks for events to deliver")

    @model_validator(mode="after")
    def _check_webhooks(self) -> WebhookSettings:
        for value in self.allowed_networks:
            try:
                ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                raise ValueError(f"allowed_networks: '{value}' is not an IP network like "
                                 "10.0.0.0/8") from None
        for name in ("timeout", "poll_interval", "first_delay"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be more than 0s")
        return self


class ImapSettings(Section):
    host: str = Field("", description="IMAP server of the mailbox bounces arrive in; "
                      "empty: no IMAP intake")
    port: int = Field(993, ge=1, le=65535, description="993 with security tls, 143 otherwise")
    security: Literal["tls", "starttls", "none"] = Field("tls", description="none only "
                                                         "to a loopback host")
    username: str = Field("", description="the mailbox's login")
    password: Secret = Field(SecretStr(""), description="its password (or env:NAME, "
                             "file:/path)")
    mailbox: str = Field("INBOX", description="the folder polled for bounces")
    move_to: str = Field("", description="folder a processed message is moved to (created "
                         "if missing); empty: it stays, flagged \\Seen and $OutboxProcessed")
    poll_interval: Duration = Field(timedelta(seconds=60), description="time between polls")
    timeout: Duration = Field(timedelta(seconds=30), description="each IMAP command")
    tls_verify: bool = Field(True, description="check the server's certificate")
    ca_file: str = Field("", description="trust this CA for the server's certificate")

    @model_validator(mode="after")
    def _check_imap(self) -> ImapSettings:
        if self.host and self.security == "none" and not is_loopback_host(self.host):
            raise ValueError("security: none sends the password in clear; only allowed to "
                             "a loopback host")
        if self.host and not self.username:
            raise ValueError("username: required with host")
        return self


class BounceSettings(ListenAddress, Section):
    domain: str = Field("", description="domain of the VERP return path "
                        "<local_part>+<token>@<domain> set as each message's envelope sender, "
                        "so that bounces come back to Outbox; its MX (or a forwarding rule) "
                        "must reach [bounces] bind or the [bounces.imap] mailbox; empty: "
                        "envelope senders are left as submitted and no bounce is read")
    local_part: str = Field("bounces", min_length=1, max_length=14,
                            pattern=r"^[A-Za-z0-9._-]+$", description="the return path's "
                            "local part before the +")
    secret: Secret = Field(SecretStr(""), description="HMAC key of the return path tokens; "
                           "empty: a key kept in the database, shared by every node")
    bind: str = Field("", description="host:port of an SMTP listener that takes bounces for "
                      "the domain (no AUTH; only bounce addresses are accepted), e.g. "
                      "0.0.0.0:25; empty: none")
    imap: ImapSettings = Field(default_factory=ImapSettings, description="a mailbox polled "
                               "for bounces, for operators who only have a mailbox")

    @model_validator(mode="after")
    def _check_bounces(self) -> BounceSettings:
        if self.bind:
            host, colon, port = self.bind.rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError(f"bind: '{self.bind}' is not host:port")
        if (self.bind or self.imap.host) and not self.domain:
            raise ValueError("domain: required to take bounces (bind or imap)")
        return self


class SuppressionSettings(Section):
    on_submit: Literal["refuse", "allow"] = Field("refuse", description="a message to a "
                                                  "suppressed address: refuse (422 code "
                                                  "suppressed, naming the recipient) or allow")


class DkimKey(Section):
    domain: str = Field(description="sign mail whose From is at this domain (d=)")
    selector: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="s=: the key's DNS "
                          "record is <selector>._domainkey.<domain>")
    algorithm: Literal["rsa-sha256", "ed25519-sha256"] = Field(
        "rsa-sha256", description="rsa-sha256 (RSA, 2048 bits or more) or ed25519-sha256 "
        "(RFC 8463); a domain may have one of each (dual signing)")
    private_key: Secret = Field(description="the private key: PEM text (RSA; PKCS#8 for "
                                "Ed25519, or the base64 seed dknewkey writes), or env:NAME, "
                                "file:/path")


class DkimSettings(Section):
    keys: list[DkimKey] = Field(default_factory=list, description="signing keys by domain; "
                                "mail from a domain without a key is sent unsigned")
    headers: list[str] = Field(default_factory=lambda: [
        "From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "MIME-Version",
        "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post"],
        description="header fields signed (when present)")
    canonicalization: Literal["relaxed/relaxed", "relaxed/simple", "simple/simple"] = Field(
        "relaxed/relaxed", description="header/body canonicalization (c=)")


class UiSettings(Section):
    enabled: bool = Field(True, description="serve the web UI at /ui (sign in with users from "
                          "`outbox users create`)")
    public_url: str = Field("", description="the UI's address as browsers reach it, e.g. "
                            "https://outbox.example.com (OAuth2 redirect URI, Secure cookies); "
                            "empty: taken from each request")
    session_max_age: Duration = Field(timedelta(hours=12), description="a sign-in lasts this "
                                      "long")
    login_attempts: int = Field(5, ge=1, description="failed sign-ins allowed per user name and "
                                "per client address within login_window")
    login_window: Duration = Field(timedelta(minutes=5), description="the window of "
                                   "login_attempts")


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
