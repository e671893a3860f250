"""Deck versions: package.deck_version, route.deck_version

A deck replacement records the tenant's new config_version on the deck's owner, so a rater
reloading the tenant after any change reads again only the decks that changed.

Revision ID: deck_version
Revises: rerate_progress
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "deck_version"
down_revision: str | None = "rerate_progress"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("package", "route"):
        op.add_column(
            table, sa.Column("deck_version", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    for table in ("package", "route"):
        op.drop_column(table, "deck_version")
