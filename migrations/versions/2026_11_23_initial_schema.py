"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 13:22:48.624838
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("cdr_feed_seq")))
    op.create_table(
        "tenant",
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("timezone", sa.Text(), server_default="UTC", nullable=False),
        sa.Column("country", sa.Text(), server_default="US", nullable=False),
        sa.Column("currency", sa.Text(), server_default="USD", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("database_id", name=op.f("pk_tenant")),
    )
    op.create_table(
        "api_account",
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("api_account_id", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=True),
        sa.Column("default_package", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["database_id"],
            ["tenant.database_id"],
            name=op.f("fk_api_account_database_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("database_id", "api_account_id", name=op.f("pk_api_account")),
    )
    op.create_table(
        "cdr",
        sa.Column("cdr_id", sa.UUID(), nullable=False),
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("api_account", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), server_default="api", nullable=False),
        sa.Column("originating_number", sa.Text(), nullable=False),
        sa.Column("destination_number", sa.Text(), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("start_time_raw", sa.Text(), nullable=True),
        sa.Column("duration", sa.Integer(), nullable=False),
        sa.Column("disposition", sa.Text(), nullable=False),
        sa.Column("ring_seconds", sa.Integer(), nullable=True),
        sa.Column("account_code", sa.Text(), nullable=True),
        sa.Column(
            "extra",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rated", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("unrated_reason", sa.Text(), nullable=True),
        sa.Column("direction", sa.Text(), nullable=True),
        sa.Column("extension", sa.Text(), nullable=True),
        sa.Column("package_id", sa.Text(), nullable=True),
        sa.Column("route_id", sa.Text(), nullable=True),
        sa.Column("account", sa.Text(), nullable=True),
        sa.Column("client", sa.Text(), nullable=True),
        sa.Column("normalized_number", sa.Text(), nullable=True),
        sa.Column("call_type", sa.Text(), nullable=True),
        sa.Column("call_billing", sa.Text(), nullable=True),
        sa.Column("destination_name", sa.Text(), nullable=True),
        sa.Column("matched_prefix", sa.Text(), nullable=True),
        sa.Column("billed_seconds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rate", sa.Numeric(), nullable=True),
        sa.Column("total", sa.Numeric(precision=20, scale=8), nullable=True),
        sa.Column("cost", sa.Numeric(precision=20, scale=8), nullable=True),
        sa.Column("currency", sa.Text(), server_default="USD", nullable=False),
        sa.Column(
            "feed_id",
            sa.BigInteger(),
            server_default=sa.text("nextval('cdr_feed_seq')"),
            nullable=False,
        ),
        sa.Column(
            "rated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["database_id"],
            ["tenant.database_id"],
            name=op.f("fk_cdr_database_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cdr_id", name=op.f("pk_cdr")),
    )
    op.create_index(
        op.f("ix_cdr_database_id_feed_id"), "cdr", ["database_id", "feed_id"], unique=False
    )
    op.create_index(
        op.f("ix_cdr_database_id_start_time"), "cdr", ["database_id", "start_time"], unique=False
    )
    op.create_index(
        op.f("ix_cdr_database_id_unrated_reason"),
        "cdr",
        ["database_id", "unrated_reason"],
        unique=False,
        postgresql_where=sa.text("NOT rated"),
    )
    op.create_table(
        "extension",
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("extension", sa.Text(), nullable=False),
        sa.Column("package_id", sa.Text(), nullable=True),
        sa.Column("account", sa.Text(), nullable=True),
        sa.Column("client", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["database_id"],
            ["tenant.database_id"],
            name=op.f("fk_extension_database_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("database_id", "extension", name=op.f("pk_extension")),
    )
    op.create_table(
        "package",
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("package_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("route_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["database_id"],
            ["tenant.database_id"],
            name=op.f("fk_package_database_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("database_id", "package_id", name=op.f("pk_package")),
    )
    op.create_table(
        "rate_line",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("deck_kind", sa.Text(), nullable=False),
        sa.Column("deck_id", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("destination", sa.Text(), server_default="", nullable=False),
        sa.Column("rate", sa.Numeric(), nullable=False),
        sa.Column("increment", sa.Integer(), server_default="60", nullable=False),
        sa.Column("initial_increment", sa.Integer(), nullable=True),
        sa.Column("connect_fee", sa.Numeric(), server_default="0", nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("effective_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("direction", sa.Text(), server_default="outbound", nullable=False),
        sa.ForeignKeyConstraint(
            ["database_id"],
            ["tenant.database_id"],
            name=op.f("fk_rate_line_database_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_line")),
    )
    op.create_index(
        op.f("ix_rate_line_database_id_deck_kind_deck_id"),
        "rate_line",
        ["database_id", "deck_kind", "deck_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_rate_line_database_id_prefix"),
        "rate_line",
        ["database_id", "prefix"],
        unique=False,
    )
    op.create_table(
        "route",
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("route_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["database_id"],
            ["tenant.database_id"],
            name=op.f("fk_route_database_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("database_id", "route_id", name=op.f("pk_route")),
    )
    op.create_table(
        "subscription",
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("format", sa.Text(), server_default="json", nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column(
            "filter",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="10", nullable=False),
        sa.Column("xmlrpc_method", sa.Text(), server_default="cdr.notify", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["database_id"],
            ["tenant.database_id"],
            name=op.f("fk_subscription_database_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("database_id", "subscription_id", name=op.f("pk_subscription")),
    )
    op.create_table(
        "delivery",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("database_id", sa.Text(), nullable=False),
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("cdr_id", sa.UUID(), nullable=False),
        sa.Column("feed_id", sa.BigInteger(), nullable=False),
        sa.Column("webhook_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("attempt_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["database_id", "subscription_id"],
            ["subscription.database_id", "subscription.subscription_id"],
            name=op.f("fk_delivery_database_id_subscription"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
        sa.UniqueConstraint(
            "database_id",
            "subscription_id",
            "cdr_id",
            "feed_id",
            name=op.f("uq_delivery_database_id_subscription_id_cdr_id_feed_id"),
        ),
    )
    op.create_index(
        op.f("ix_delivery_next_attempt_at"),
        "delivery",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "delivery_attempt",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
            name=op.f("fk_delivery_attempt_delivery_id_delivery"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempt")),
    )
    op.create_index(
        op.f("ix_delivery_attempt_delivery_id"), "delivery_attempt", ["delivery_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_delivery_attempt_delivery_id"), table_name="delivery_attempt")
    op.drop_table("delivery_attempt")
    op.drop_index(
        op.f("ix_delivery_next_attempt_at"),
        table_name="delivery",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("delivery")
    op.drop_table("subscription")
    op.drop_table("route")
    op.drop_index(op.f("ix_rate_line_database_id_prefix"), table_name="rate_line")
    op.drop_index(op.f("ix_rate_line_database_id_deck_kind_deck_id"), table_name="rate_line")
    op.drop_table("rate_line")
    op.drop_table("package")
    op.drop_table("extension")
    op.drop_index(
        op.f("ix_cdr_database_id_unrated_reason"),
        table_name="cdr",
        postgresql_where=sa.text("NOT rated"),
    )
    op.drop_index(op.f("ix_cdr_database_id_start_time"), table_name="cdr")
    op.drop_index(op.f("ix_cdr_database_id_feed_id"), table_name="cdr")
    op.drop_table("cdr")
    op.drop_table("api_account")
    op.drop_table("tenant")
    op.execute(sa.schema.DropSequence(sa.Sequence("cdr_feed_seq")))
