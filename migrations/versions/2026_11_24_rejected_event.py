"""rejected_event: consumed records a stage could not process, kept once

Revision ID: rejected_event
Revises: 0001
Create Date: 2026-11-24 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "rejected_event"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rejected_event",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("key", postgresql.BYTEA(), nullable=True),
        sa.Column("value", postgresql.BYTEA(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "rejected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_event")),
        sa.UniqueConstraint(
            "stage",
            "topic",
            "partition",
            "offset",
            name=op.f("uq_rejected_event_stage_topic_partition_offset"),
        ),
    )
    op.create_index(
        op.f("ix_rejected_event_stage_id"), "rejected_event", ["stage", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_rejected_event_stage_id"), table_name="rejected_event")
    op.drop_table("rejected_event")
