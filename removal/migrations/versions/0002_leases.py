"""Leases of removal jobs, so one replica runs each.

Revision ID: removal_0002
Revises: removal_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "removal_0002"
down_revision = "removal_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("removal_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_expires", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("removal_jobs", schema=None) as batch_op:
        batch_op.drop_column("lease_expires")
        batch_op.drop_column("lease_owner")
