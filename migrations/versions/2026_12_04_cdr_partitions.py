"""`cdr` range-partitioned by month of `cdr_id` (UUIDv7: its first 48 bits are the arrival ms)

The table is rewritten once: a new `cdr` with the same columns (`LIKE`: types, NOT NULLs,
defaults, `cdr_next_feed_id()` included) `PARTITION BY RANGE (cdr_id)`, the rows copied into
it, the old one dropped; the primary key `cdr_id`, the rater's `ON CONFLICT (cdr_id)` and the
`cdr_revision` foreign key (re-pointed at the new table, still ON DELETE CASCADE) stay as they
were, and so do every constraint and index name. Why `cdr_id` and not `start_time` or
`received_at`: docs/architecture.md, "Partitioning".

* `cdr_id_floor(timestamptz)`: the smallest UUIDv7 of that millisecond (its 48 time bits,
  every other bit zero); a month partition holds the ids from its first millisecond's floor
  (UTC) up to the next month's.
* `cdr_create_month_partition(date)`: creates the month's partition `cdr_yYYYYmMM` if it is
  missing, as an empty table ATTACHed to `cdr` (SHARE UPDATE EXCLUSIVE on `cdr`, so waiting
  for its locks never queues the raters' inserts; `CREATE TABLE ... PARTITION OF` would take
  ACCESS EXCLUSIVE on `cdr`). It answers what it did: `created`, `exists`, `busy` (another
  session is creating partitions right now), `default_has_rows` or `name_taken`. The rater's
  partition-ahead task (cdr_rater.partitions) calls it each day under a short lock_timeout.
* `cdr_default`, the DEFAULT partition: ids outside every month created (UUIDv4 ids that
  tests insert; an id from a clock months ahead). Attaching a month checks that the default
  holds no row of its range (scanning it under ACCESS EXCLUSIVE: keep it small). When it does,
  the month is skipped (`default_has_rows`, with a WARNING) and its rows go on landing in the
  default, stored once and found by every query. Moving them would mean deleting them from
  the default, and a delete there cascades to their `cdr_revision` history: that is left to
  an operator (docs/architecture.md).
* Partitions made here: the months of the existing UUIDv7 rows, and this month and the next
  three (UTC), before the rows are copied; then the constraints and indexes are built once
  over the filled partitions.
* The feed index `(database_id, feed_id)` is no longer unique: a unique index of a
  partitioned table must contain `cdr_id`, and `(database_id, feed_id, cdr_id)` unique would
  be implied by the primary key, so it would refuse nothing while every entry grew by 16
  bytes. What the uniqueness guarded was two rows of one transaction sharing a feed id:
  their low 20 bits wrap only after 2^20 (1,048,576) values of `cdr_feed_seq`, taken by all
  writers together while that one transaction runs, and our writers' transactions are one
  batch statement of tens of milliseconds. The feed scan is the same on either index.

Revision ID: cdr_partitions
Revises: queries_storage
Create Date: 2026-12-04 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cdr_partitions"
down_revision: str | None = "queries_storage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_FLOOR_FUNCTION = """
CREATE FUNCTION cdr_id_floor(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0')
            || repeat('0', 20))::uuid
$$
"""

CREATE_PARTITION_FUNCTION = """
CREATE FUNCTION cdr_create_month_partition(month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    first timestamp := date_trunc('month', month::timestamp);
    name text := 'cdr_' || to_char(first, '"y"YYYY"m"MM');
    low uuid := cdr_id_floor(first AT TIME ZONE 'UTC');
    high uuid := cdr_id_floor((first + interval '1 month') AT TIME ZONE 'UTC');
BEGIN
    -- Every rater replica runs the task: one creates, the others find it done next round.
    IF NOT pg_try_advisory_xact_lock(hashtext('cdr_create_month_partition')) THEN
        RETURN 'busy';
    END IF;
    IF to_regclass(name) IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM pg_inherits
                   WHERE inhrelid = to_regclass(name) AND inhparent = 'cdr'::regclass) THEN
            RETURN 'exists';
        END IF;
        RAISE WARNING 'cdr partition % not created: a relation of that name exists', name;
        RETURN 'name_taken';
    END IF;
    -- Probed on the default's primary key first, so a known conflict waits for no lock.
    IF EXISTS (SELECT 1 FROM cdr_default WHERE cdr_id >= low AND cdr_id < high) THEN
        RAISE WARNING 'cdr partition % not created: cdr_default holds rows of its range; '
                      'they stay there', name;
        RETURN 'default_has_rows';
    END IF;
    BEGIN
        EXECUTE format('CREATE TABLE %I (LIKE cdr INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
                       ' INCLUDING STORAGE INCLUDING COMPRESSION)', name);
        EXECUTE format('ALTER TABLE cdr ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       name, low, high);
    EXCEPTION WHEN check_violation THEN  -- a row reached the default since the probe
        RAISE WARNING 'cdr partition % not created: cdr_default holds rows of its range; '
                      'they stay there', name;
        RETURN 'default_has_rows';
    END;
    RETURN 'created';
END
$$
"""

# The months the existing UUIDv7 rows arrived in, and this month and the next three.
CREATE_PARTITIONS = """
SELECT cdr_create_month_partition(month)
FROM (
    SELECT DISTINCT date_trunc('month', uuid_extract_timestamp(cdr_id) AT TIME ZONE 'UTC')::date
    FROM cdr_unpartitioned WHERE uuid_extract_version(cdr_id) = 7
    UNION
    SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => n))::date
    FROM generate_series(0, 3) AS n
) AS months (month)
ORDER BY month
"""

# (name, columns, WHERE of a partial index) of the secondary indexes, as cdrmodel/db.py.
INDEXES = (
    ("ix_cdr_database_id_start_time_cdr_id", ["database_id", "start_time", "cdr_id"], None),
    ("ix_cdr_database_id_account_start_time", ["database_id", "account", "start_time"], None),
    ("ix_cdr_database_id_client_start_time", ["database_id", "client", "start_time"], None),
    ("ix_cdr_database_id_unrated_reason", ["database_id", "unrated_reason"], "NOT rated"),
    ("ix_cdr_database_id_cdr_id", ["database_id", "cdr_id"], "NOT rated"),
)
FEED_INDEX = ("ix_cdr_database_id_feed_id", ["database_id", "feed_id"])


def _set_aside_old_table() -> None:
    """`cdr` renamed to `cdr_unpartitioned`, its index names freed for the new table."""
    op.drop_constraint("fk_cdr_revision_cdr_id_cdr", "cdr_revision", type_="foreignkey")
    op.execute("LOCK TABLE cdr IN ACCESS EXCLUSIVE MODE")
    op.rename_table("cdr", "cdr_unpartitioned")
    for name, _, _ in INDEXES:
        op.drop_index(name, table_name="cdr_unpartitioned")
    op.drop_index(FEED_INDEX[0], table_name="cdr_unpartitioned")
    op.execute("ALTER INDEX pk_cdr RENAME TO cdr_unpartitioned_pkey")


def _constrain_new_table(*, unique_feed: bool) -> None:
    """Keys, foreign keys and indexes on the filled `cdr`, and the old table dropped."""
    op.create_primary_key("pk_cdr", "cdr", ["cdr_id"])
    op.create_foreign_key(
        "fk_cdr_database_id_tenant",
        "cdr",
        "tenant",
        ["database_id"],
        ["database_id"],
        ondelete="CASCADE",
    )
    op.create_index(FEED_INDEX[0], "cdr", FEED_INDEX[1], unique=unique_feed)
    for name, columns, where in INDEXES:
        op.create_index(name, "cdr", columns, postgresql_where=sa.text(where) if where else None)
    op.drop_table("cdr_unpartitioned")
    op.create_foreign_key(
        "fk_cdr_revision_cdr_id_cdr",
        "cdr_revision",
        "cdr",
        ["cdr_id"],
        ["cdr_id"],
        ondelete="CASCADE",
    )
    op.execute("ANALYZE cdr")


def upgrade() -> None:
    _set_aside_old_table()
    # LIKE: the same columns in the same order, with their NOT NULLs and defaults.
    op.execute(
        "CREATE TABLE cdr (LIKE cdr_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
        " INCLUDING STORAGE INCLUDING COMPRESSION) PARTITION BY RANGE (cdr_id)"
    )
    op.execute("CREATE TABLE cdr_default PARTITION OF cdr DEFAULT")
    op.execute(ID_FLOOR_FUNCTION)
    op.execute(CREATE_PARTITION_FUNCTION)
    op.execute(CREATE_PARTITIONS)
    op.execute("INSERT INTO cdr SELECT * FROM cdr_unpartitioned")
    _constrain_new_table(unique_feed=False)


def downgrade() -> None:
    # The same steps the other way: one plain table, the feed index unique again (which
    # fails, as it should, if two rows of a tenant came to share a feed id meanwhile).
    _set_aside_old_table()
    op.execute(
        "CREATE TABLE cdr (LIKE cdr_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
        " INCLUDING STORAGE INCLUDING COMPRESSION)"
    )
    op.execute("INSERT INTO cdr SELECT * FROM cdr_unpartitioned")
    _constrain_new_table(unique_feed=True)  # drops cdr_unpartitioned and its partitions
    op.execute("DROP FUNCTION cdr_create_month_partition(date)")
    op.execute("DROP FUNCTION cdr_id_floor(timestamptz)")
