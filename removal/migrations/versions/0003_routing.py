"""The routing of traffic between arms, shared by every replica.

Revision ID: removal_0003
Revises: removal_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "removal_0003"
down_revision = "removal_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routing",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("routing")
