"""Re-rating progress: tenant.rerated_version, cdr_revision.published_at, unrated keyset index

Revision ID: rerate_progress
Revises: rating_seams
Create Date: 2026-11-25 12:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "rerate_progress"
down_revision: str | None = "rating_seams"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tenant",
        sa.Column("rerated_version", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "cdr_revision", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        op.f("ix_cdr_database_id_cdr_id"),
        "cdr",
        ["database_id", "cdr_id"],
        unique=False,
        postgresql_where=sa.text("NOT rated"),
    )
    op.create_index(
        op.f("ix_cdr_revision_changed_at"),
        "cdr_revision",
        ["changed_at"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_cdr_revision_changed_at"), table_name="cdr_revision")
    op.drop_index(op.f("ix_cdr_database_id_cdr_id"), table_name="cdr")
    op.drop_column("cdr_revision", "published_at")
    op.drop_column("tenant", "rerated_version")
