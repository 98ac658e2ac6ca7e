"""Blobs: attachment content by sha256, the messages and links that use it, uploads,
database-held chunks (for [storage] blobs = "database"), and signing keys for links.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("keep_until", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_blobs"),
    )
    op.create_index("ix_blobs_keep_until", "blobs", ["keep_until"])
    create_blob_refs()
    create_uploads()
    op.create_table(
        "blob_chunks",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("key", "seq", name="pk_blob_chunks"),
    )
    op.create_table(
        "signing_keys",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_signing_keys"),
    )


def create_blob_refs() -> None:
    op.create_table(
        "blob_refs",
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("keep_until", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(["sha256"], ["blobs.sha256"],
                                name="fk_blob_refs_sha256_blobs"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE",
                                name="fk_blob_refs_message_id_messages"),
        sa.PrimaryKeyConstraint("sha256", "message_id", name="pk_blob_refs"),
    )
    op.create_index("ix_blob_refs_message_id", "blob_refs", ["message_id"])


def create_uploads() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["sha256"], ["blobs.sha256"], name="fk_uploads_sha256_blobs"),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
    )
    op.create_index("ix_uploads_sha256", "uploads", ["sha256"])
    op.create_index("ix_uploads_expires_at", "uploads", ["expires_at"])


def downgrade() -> None:
    op.drop_table("signing_keys")
    op.drop_table("blob_chunks")
    op.drop_table("uploads")
    op.drop_table("blob_refs")
    op.drop_table("blobs")
