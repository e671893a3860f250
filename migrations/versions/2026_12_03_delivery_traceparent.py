"""delivery.traceparent: the trace a push continues

The W3C traceparent of the notifier's span for the event a delivery came from, written by the
recorder while tracing is on (cdrmodel.tracing) and read by the claim, so each push, made
later from the row rather than from the Kafka record, is part of the call's trace. Nullable
with no default: adding it rewrites nothing, and rows recorded with tracing off keep NULL.

Revision ID: delivery_traceparent
Revises: notifier_delivery
Create Date: 2026-12-03 18:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "delivery_traceparent"
down_revision: str | None = "notifier_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("delivery", sa.Column("traceparent", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("delivery", "traceparent")
