"""Removal's first tables: removal jobs and the model versions they produce.

Revision ID: removal_0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "removal_0001"
down_revision = None
branch_labels = ("removal",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("parent", sa.String(length=64), nullable=True),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("forget_request_ids", sa.JSON(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
    )
    op.create_table(
        "removal_jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("forget_request_ids", sa.JSON(), nullable=False),
        sa.Column("parent_version", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("version_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("removal_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_removal_jobs_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("removal_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_removal_jobs_status"))

    op.drop_table("removal_jobs")
    op.drop_table("model_versions")
