"""Feed ids that never become visible out of order; what the queries read and filter on

* `cdr_next_feed_id()`: the feed id of every (re)write of a CDR is the writing transaction's
  id in its high bits and a sequence value in its low 20. Ids taken from a sequence alone
  become visible in commit order, not in id order, so a client reading "everything >= N"
  could pass over an id a slower writer commits later. With the writer's transaction id in
  front, the feed exposes only ids below `pg_snapshot_xmin(pg_current_snapshot()) << 20`:
  every transaction under that horizon has ended, and every later write has a larger id
  (docs/architecture.md, "The billing feed"). Existing rows keep their ids, which the
  sequence gave and which are below any id the function hands out (checked here).
* `cdr (database_id, feed_id)` unique: the feed pages on it (a collision of the low bits,
  which would take a million sequence values within one writer's transaction, fails that
  transaction, which is retried, rather than sharing an id).
* `cdr.recording_url`: the recording a PBX sent (seed 003's `record`).
* `api_account.allowed_networks`: CIDRs the account may read from (NULL: anywhere).
* Indexes for one account's or one reseller client's calls in a time range (getCDR,
  getResellerCDR) and for `/v1/cdrs` keyset paging by start time.

Revision ID: queries_storage
Revises: delivery_traceparent
Create Date: 2026-12-04 01:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "queries_storage"
down_revision: str | None = "delivery_traceparent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FEED_ID_FUNCTION = """
CREATE FUNCTION cdr_next_feed_id() RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE AS $$
    SELECT (pg_current_xact_id()::text::bigint << 20) | (nextval('cdr_feed_seq') & 1048575)
$$
"""

# Sequence ids already handed out must stay below the first id of the new kind.
CHECK_EXISTING_IDS = """
DO $$
BEGIN
    IF (SELECT coalesce(max(feed_id), 0) FROM cdr) >= (pg_current_xact_id()::text::bigint << 20)
    THEN
        RAISE EXCEPTION 'cdr.feed_id already holds ids above the first transaction-based id';
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute(FEED_ID_FUNCTION)
    op.execute(CHECK_EXISTING_IDS)
    op.alter_column("cdr", "feed_id", server_default=sa.text("cdr_next_feed_id()"))
    op.drop_index("ix_cdr_database_id_feed_id", table_name="cdr")
    op.create_index("ix_cdr_database_id_feed_id", "cdr", ["database_id", "feed_id"], unique=True)
    op.add_column("cdr", sa.Column("recording_url", sa.Text(), nullable=True))
    op.add_column(
        "api_account",
        sa.Column("allowed_networks", postgresql.ARRAY(sa.Text()), nullable=True),
    )
    op.create_index(
        "ix_cdr_database_id_account_start_time", "cdr", ["database_id", "account", "start_time"]
    )
    op.create_index(
        "ix_cdr_database_id_client_start_time", "cdr", ["database_id", "client", "start_time"]
    )
    op.drop_index("ix_cdr_database_id_start_time", table_name="cdr")
    op.create_index(
        "ix_cdr_database_id_start_time_cdr_id", "cdr", ["database_id", "start_time", "cdr_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_cdr_database_id_start_time_cdr_id", table_name="cdr")
    op.create_index("ix_cdr_database_id_start_time", "cdr", ["database_id", "start_time"])
    op.drop_index("ix_cdr_database_id_client_start_time", table_name="cdr")
    op.drop_index("ix_cdr_database_id_account_start_time", table_name="cdr")
    op.drop_column("api_account", "allowed_networks")
    op.drop_column("cdr", "recording_url")
    op.drop_index("ix_cdr_database_id_feed_id", table_name="cdr")
    op.create_index("ix_cdr_database_id_feed_id", "cdr", ["database_id", "feed_id"])
    op.alter_column("cdr", "feed_id", server_default=sa.text("nextval('cdr_feed_seq')"))
    op.execute("DROP FUNCTION cdr_next_feed_id()")
