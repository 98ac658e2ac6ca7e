"""List filters: recipients indexed by lower(address) and by relay, for
`GET /v1/messages?recipient=…&relay=…` and `outbox queue ls`.

Revision ID: 0009_list_filters
Revises: 0007_relay_governor
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_list_filters"
down_revision = "0007_relay_governor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_recipients_address_lower", "recipients", [sa.text("lower(address)")])
    op.create_index("ix_recipients_relay", "recipients", ["relay"])


def downgrade() -> None:
    op.drop_index("ix_recipients_relay", table_name="recipients")
    op.drop_index("ix_recipients_address_lower", table_name="recipients")
