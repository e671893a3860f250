"""Rating seams: tenant.config_version, rate_line.time_band, cdr.revision, cdr.pricing, cdr_revision

Revision ID: rating_seams
Revises: ingest_dedupe
Create Date: 2026-11-25 11:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "rating_seams"
down_revision: str | None = "ingest_dedupe"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tenant",
        sa.Column("config_version", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column("rate_line", sa.Column("time_band", sa.Text(), nullable=True))
    op.add_column("cdr", sa.Column("revision", sa.Integer(), server_default="1", nullable=False))
    op.add_column(
        "cdr", sa.Column("pricing", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.create_table(
        "cdr_revision",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("cdr_id", sa.UUID(), nullable=False),
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("old", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("new", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["cdr_id"],
            ["cdr.cdr_id"],
            name=op.f("fk_cdr_revision_cdr_id_cdr"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdr_revision")),
        sa.UniqueConstraint("cdr_id", "revision", name=op.f("uq_cdr_revision_cdr_id_revision")),
    )
    op.create_index(
        op.f("ix_cdr_revision_database_id_changed_at"),
        "cdr_revision",
        ["database_id", "changed_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_cdr_revision_database_id_changed_at"), table_name="cdr_revision")
    op.drop_table("cdr_revision")
    op.drop_column("cdr", "pricing")
    op.drop_column("cdr", "revision")
    op.drop_column("rate_line", "time_band")
    op.drop_column("tenant", "config_version")
