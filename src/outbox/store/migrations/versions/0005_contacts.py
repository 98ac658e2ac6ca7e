"""The address book: contacts (with addresses and search terms), groups and their
members, aliases, address usage for autocomplete, and directory sync state.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KeyText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    create_contacts()
    create_groups()
    create_aliases_usage_and_sync_state()


def create_contacts() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("name_key", KeyText, server_default="", nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_contacts"),
        sa.UniqueConstraint("source", "external_id", name="uq_contacts_source_external_id"),
    )
    op.create_index("ix_contacts_name_key", "contacts", ["name_key"])
    op.create_table(
        "contact_emails",
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("address_key", KeyText, nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE",
                                name="fk_contact_emails_contact_id_contacts"),
        sa.PrimaryKeyConstraint("contact_id", "position", name="pk_contact_emails"),
    )
    op.create_index("ix_contact_emails_address_key", "contact_emails", ["address_key"])
    op.create_table(
        "contact_terms",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("term", KeyText, nullable=False),
        sa.Column("rank", sa.Float(), nullable=False),
        sa.Column("name_key", KeyText, nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("address_key", KeyText, nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE",
                                name="fk_contact_terms_contact_id_contacts"),
        sa.PrimaryKeyConstraint("id", name="pk_contact_terms"),
    )
    op.create_index("ix_contact_terms_term", "contact_terms",
                    ["term", "rank", "name_key", "contact_id", "position"])
    op.create_index("ix_contact_terms_contact_id", "contact_terms", ["contact_id"])
    op.create_index("ix_contact_terms_address_key", "contact_terms", ["address_key"])


def create_groups() -> None:
    op.create_table(
        "address_groups",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_key", KeyText, nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_address_groups"),
        sa.UniqueConstraint("name_key", name="uq_address_groups_name_key"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", BigId, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("contact_id", BigId, nullable=True),
        sa.Column("member_group_id", BigId, nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["group_id"], ["address_groups.id"], ondelete="CASCADE",
                                name="fk_group_members_group_id_address_groups"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE",
                                name="fk_group_members_contact_id_contacts"),
        sa.ForeignKeyConstraint(["member_group_id"], ["address_groups.id"], ondelete="CASCADE",
                                name="fk_group_members_member_group_id_address_groups"),
        sa.PrimaryKeyConstraint("group_id", "position", name="pk_group_members"),
    )
    op.create_index("ix_group_members_contact_id", "group_members", ["contact_id"])
    op.create_index("ix_group_members_member_group_id", "group_members", ["member_group_id"])


def create_aliases_usage_and_sync_state() -> None:
    op.create_table(
        "aliases",
        sa.Column("name_key", KeyText, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("name_key", name="pk_aliases"),
    )
    op.create_table(
        "address_usage",
        sa.Column("address_key", KeyText, nullable=False),
        sa.Column("use_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_used_at", Timestamp, nullable=False),
        sa.Column("rank", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("address_key", name="pk_address_usage"),
    )
    op.create_table(
        "sync_state",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("cursor", sa.Text(), server_default="", nullable=False),
        sa.Column("synced_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_sync_state"),
    )


def downgrade() -> None:
    for table in ("sync_state", "address_usage", "aliases", "group_members", "address_groups",
                  "contact_terms", "contact_emails", "contacts"):
        op.drop_table(table)
