"""The change sequence that replicas follow.

Revision ID: index_0002
Revises: index_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "index_0002"
down_revision = "index_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )


def downgrade() -> None:
    op.drop_table("changes")
