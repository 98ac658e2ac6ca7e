"""The schema, as SQLAlchemy Core tables; migrations/ must produce exactly this.

Five tables: `messages` (one row per message, with its claim and hold
state), `recipients` (in submission order), `attempts` (one row per finished
attempt, with the redacted transcript), `events` (the timeline) and `alerts`
(relay and queue alerts, core.alerting).

A message is claimable exactly when `due_at` is set and has passed; every
transition to a non-claimable status clears it, so the partial index on
`due_at` holds only the waiting queue and claiming stays flat however many
finished messages the table keeps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`; SQLite stores fixed-width text in UTC
    without an offset (so that text comparison is time comparison) and gets
    the UTC zone back on the way out. Naive datetimes are refused.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"a timezone-aware datetime is required, not {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("sender", sa.Text, nullable=False),
    sa.Column("content", sa.JSON, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=True),
    sa.Column("claimed_by", sa.Text, nullable=True),
    sa.Column("claim_token", sa.Text, nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    sa.Column("held_since", UtcDateTime, nullable=True),
    sa.Column("held_seconds", sa.Float, nullable=False, server_default="0"),
    sa.Column("hold_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("held_for_relay", sa.Text, nullable=True),  # set when a relay problem held it
    sa.Column("resent_from", sa.Text, nullable=True),
    # Who submitted it (the API key's name): scopes idempotency keys and Message-IDs.
    sa.Column("owner", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.Text, nullable=True),
    sa.Column("request_hash", sa.Text, nullable=True),
    # The relay of every recipient; NULL: several (or a row not waiting at revision
    # 0016). What a claim skipping busy relays reads (store/sql/busy_claim.py).
    sa.Column("only_relay", sa.Text, nullable=True),
    # Rows without a key never collide (NULLs are distinct); one row per used key.
    sa.UniqueConstraint("owner", "idempotency_key"),
)

_WAITING = messages.c.due_at.isnot(None)
sa.Index("ix_messages_due_at", messages.c.due_at, sqlite_where=_WAITING,
         postgresql_where=_WAITING)
sa.Index("ix_messages_only_relay_due_at", messages.c.only_relay, messages.c.due_at,
         sqlite_where=_WAITING, postgresql_where=_WAITING)
sa.Index("ix_messages_created_at_id", messages.c.created_at, messages.c.id)
sa.Index("ix_messages_status_created_at_id", messages.c.status, messages.c.created_at,
         messages.c.id)
sa.Index("ix_messages_owner_message_id", messages.c.owner, messages.c.message_id)

recipients = sa.Table(
    "recipients",
    metadata,
    sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("relay", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("provenance", sa.Text, nullable=False, server_default=""),
    sa.Column("reply_code", sa.Integer, nullable=True),
    sa.Column("enhanced_code", sa.Text, nullable=True),
    sa.Column("reply", sa.Text, nullable=True),
    sa.Column("guidance", sa.Text, nullable=True),
)

# List filters (migration 0009): messages by recipient (any case) and by relay.
sa.Index("ix_recipients_address_lower", sa.func.lower(recipients.c.address))
sa.Index("ix_recipients_relay", recipients.c.relay)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("relay", sa.Text, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("transcript", sa.Text, nullable=False),
)
sa.Index("ix_attempts_message_id", attempts.c.message_id)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("recipient", sa.Text, nullable=True),
    sa.Column("reply_code", sa.Integer, nullable=True),
    sa.Column("enhanced_code", sa.Text, nullable=True),
    sa.Column("reply", sa.Text, nullable=True),
    sa.Column("guidance", sa.Text, nullable=True),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
)
sa.Index("ix_events_message_id_id", events.c.message_id, events.c.id)
# The dashboard charts: events of the last hour or day, by type (migration 0013).
sa.Index("ix_events_at_type", events.c.at, events.c.type)

# Failure ratios and relay states read the attempts of the last window.
sa.Index("ix_attempts_finished_at", attempts.c.finished_at)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("severity", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("guidance", sa.Text, nullable=False, server_default=""),
    sa.Column("raised_at", UtcDateTime, nullable=False),
    sa.Column("cleared_at", UtcDateTime, nullable=True),
)
# At most one active alert per key, so two nodes raising it at once insert it once.
sa.Index(
    "ix_alerts_key_active",
    alerts.c.key,
    unique=True,
    sqlite_where=alerts.c.cleared_at.is_(None),
    postgresql_where=alerts.c.cleared_at.is_(None),
)
sa.Index("ix_alerts_raised_at", alerts.c.raised_at)

# --- the address book (migration 0005): contacts, groups, aliases, usage, sync state ---------
# Keys and search terms compare bytewise (collation "C" on PostgreSQL; SQLite's
# default BINARY), so "starts with" is an index range: prefix <= term < prefix + U+10FFFF.
KeyText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("name_key", KeyText, nullable=False, server_default=""),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=True),  # the directory's id (LDAP entryUUID)
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("source", "external_id"),
)
sa.Index("ix_contacts_name_key", contacts.c.name_key)

contact_emails = sa.Table(
    "contact_emails",
    metadata,
    sa.Column("contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),  # 0: the address groups send to
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("address_key", KeyText, nullable=False),
)
sa.Index("ix_contact_emails_address_key", contact_emails.c.address_key)

# What autocomplete matches, one row per (term, address): the name, each word of it,
# and the address itself. The address's usage rank (core.contacts) and the name key
# are copied here, so ranking the matches of a prefix is one covering-index range.
contact_terms = sa.Table(
    "contact_terms",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("term", KeyText, nullable=False),
    sa.Column("rank", sa.Float, nullable=False),
    sa.Column("name_key", KeyText, nullable=False),
    sa.Column("contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("position", sa.Integer, nullable=False),  # of the address in contact_emails
    sa.Column("address_key", KeyText, nullable=False),
)
sa.Index("ix_contact_terms_term", contact_terms.c.term, contact_terms.c.rank,
         contact_terms.c.name_key, contact_terms.c.contact_id, contact_terms.c.position)
sa.Index("ix_contact_terms_contact_id", contact_terms.c.contact_id)
sa.Index("ix_contact_terms_address_key", contact_terms.c.address_key)

address_groups = sa.Table(
    "address_groups",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_key", KeyText, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("name_key"),
)

# One of contact_id, member_group_id, address is set: a contact, a nested group, an address.
group_members = sa.Table(
    "group_members",
    metadata,
    sa.Column("group_id", BigId, sa.ForeignKey("address_groups.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("member_group_id", BigId, sa.ForeignKey("address_groups.id", ondelete="CASCADE"),
              nullable=True),
    sa.Column("address", sa.Text, nullable=True),
)
sa.Index("ix_group_members_contact_id", group_members.c.contact_id)
sa.Index("ix_group_members_member_group_id", group_members.c.member_group_id)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("name_key", KeyText, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("targets", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# How often and how recently each address was submitted to (core.contacts: rank).
address_usage = sa.Table(
    "address_usage",
    metadata,
    sa.Column("address_key", KeyText, primary_key=True),
    sa.Column("use_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_used_at", UtcDateTime, nullable=False),
    sa.Column("rank", sa.Float, nullable=False),
)

sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("cursor", sa.Text, nullable=False, server_default=""),
    sa.Column("synced_at", UtcDateTime, nullable=False),
)

# --- relay authentication (migration 0003): relay credentials and state, API keys ----------
# One row per relay once its state or credentials changed. `credentials` is the
# Fernet token of the credentials set through the CLI or API (NULL: the config's);
# `version` grows with every such change, so every node knows to pick them up.
relay_auth = sa.Table(
    "relay_auth",
    metadata,
    sa.Column("relay", sa.Text, primary_key=True),
    sa.Column("state", sa.Text, nullable=False, server_default="ok"),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("credentials", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("guidance", sa.Text, nullable=False, server_default=""),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# API keys made with `outbox keys create`: only the key's SHA-256 is kept.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("digest", sa.Text, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    # Rate limits (migration 0006_webhooks_rate_limits): NULL is [auth]'s default, 0 none.
    sa.Column("requests_per_minute", sa.Integer, nullable=True),
    sa.Column("messages_per_minute", sa.Integer, nullable=True),
    sa.UniqueConstraint("digest"),
)
# A name belongs to one active key at a time; revoked keys keep their rows.
sa.Index(
    "ix_api_keys_name_active",
    api_keys.c.name,
    unique=True,
    sqlite_where=api_keys.c.revoked_at.is_(None),
    postgresql_where=api_keys.c.revoked_at.is_(None),
)

# --- blobs: attachment content, its uses, uploads, and database-held chunks ---------------
# A blob is content addressed by its sha256. It is kept while `keep_until` has not passed
# (an upload's TTL) or a live use exists: a message not yet finished (or finished less than
# [storage] keep_finished ago), or a download link (`blob_refs.keep_until`) not yet expired.
# With [storage] blobs = "database" its content is in `blob_chunks` (key = sha256; a
# staging key while the upload is still streaming), else in files under blob_dir.

blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.Text, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("keep_until", UtcDateTime, nullable=False),
)
sa.Index("ix_blobs_keep_until", blobs.c.keep_until)

blob_refs = sa.Table(
    "blob_refs",
    metadata,
    sa.Column("sha256", sa.Text, sa.ForeignKey("blobs.sha256"), primary_key=True),
    sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("keep_until", UtcDateTime, nullable=True),  # a download link works until then
)
sa.Index("ix_blob_refs_message_id", blob_refs.c.message_id)

uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("sha256", sa.Text, sa.ForeignKey("blobs.sha256"), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)
sa.Index("ix_uploads_sha256", uploads.c.sha256)
sa.Index("ix_uploads_expires_at", uploads.c.expires_at)

blob_chunks = sa.Table(
    "blob_chunks",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("secret", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)


# Later features' tables are defined on this metadata in modules of their own (imported
# last, so that they can use the types above).
from outbox.store import (  # noqa: E402, F401
    tables_relays,
    tables_suppressions,
    tables_ui,
    tables_webhooks,
)
