"""ingest_key and ingest_usage: dedupe keys (50421) and daily-limit counters (50429)

Revision ID: ingest_dedupe
Revises: rejected_event
Create Date: 2026-11-25 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "ingest_dedupe"
down_revision: str | None = "rejected_event"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_key",
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("key_hash", postgresql.BYTEA(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("cdr_id", sa.UUID(), nullable=False),
        sa.Column("api_account", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("database_id", "key_hash", name=op.f("pk_ingest_key")),
    )
    op.create_index(op.f("ix_ingest_key_created_at"), "ingest_key", ["created_at"], unique=False)
    op.create_table(
        "ingest_usage",
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("api_account", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("database_id", "api_account", "day", name=op.f("pk_ingest_usage")),
    )
    op.create_index(op.f("ix_ingest_usage_day"), "ingest_usage", ["day"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ingest_usage_day"), table_name="ingest_usage")
    op.drop_table("ingest_usage")
    op.drop_index(op.f("ix_ingest_key_created_at"), table_name="ingest_key")
    op.drop_table("ingest_key")
