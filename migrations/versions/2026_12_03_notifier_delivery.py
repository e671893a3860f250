"""Notifier delivery: secret rotation columns, the CRM's reply on each attempt

subscription.previous_secret / previous_secret_until: the secret before the last rotation
signs too until then. Secrets themselves become Fernet tokens; the notifier re-encrypts the
plain ones it finds at start (cdr_notifier.secretbox), since a migration holds no key.
delivery_attempt.response_excerpt: the first 2 KiB of the CRM's reply.
ix_delivery_updated_at: the retention pruner's walk over deliveries that ended.

Revision ID: notifier_delivery
Revises: deck_version
Create Date: 2026-12-03 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "notifier_delivery"
down_revision: str | None = "deck_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("subscription", sa.Column("previous_secret", sa.Text(), nullable=True))
    op.add_column(
        "subscription",
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("delivery_attempt", sa.Column("response_excerpt", sa.Text(), nullable=True))
    op.create_index(
        op.f("ix_delivery_updated_at"),
        "delivery",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status <> 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_delivery_updated_at"), table_name="delivery")
    op.drop_column("delivery_attempt", "response_excerpt")
    op.drop_column("subscription", "previous_secret_until")
    op.drop_column("subscription", "previous_secret")
