"""Indexes on the times the evidence backfill reads, so its rounds cost what changed.

Revision ID: index_0003
Revises: index_0002
"""

from __future__ import annotations

from alembic import op

revision = "index_0003"
down_revision = "index_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_forget_requests_updated_at", "forget_requests", ["updated_at"])
    op.create_index("ix_changes_at", "changes", ["at"])


def downgrade() -> None:
    op.drop_index("ix_changes_at", "changes")
    op.drop_index("ix_forget_requests_updated_at", "forget_requests")
