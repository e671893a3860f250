"""PostgreSQL: the engine factory and every table (one metadata, migrated by Alembic)."""

from __future__ import annotations

import re

import asyncpg
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Sequence,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB, UUID
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

AMOUNT = Numeric(20, 8)  # stored money: exact, 8 places


def _ts(name: str, nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(name, DateTime(timezone=True), nullable=nullable, server_default=func.now())


tenant = Table(
    "tenant",
    metadata,
    Column("database_id", Text, primary_key=True),
    Column("name", Text, nullable=False, server_default=""),
    Column("timezone", Text, nullable=False, server_default="UTC"),
    Column("country", Text, nullable=False, server_default="US"),
    Column("currency", Text, nullable=False, server_default="USD"),
    # Bumped in the transaction of every change to the tenant's rating configuration
    # (accounts, packages, routes, extensions, decks): raters compare it to reload what
    # they cache, and the re-rating job to find unrated records a change may now price.
    Column("config_version", BigInteger, nullable=False, server_default="0"),
    # The config_version whose unrated records a re-rating pass has gone through
    # (cdr_rater.rerate): a tenant whose config_version is ahead has a pass due.
    Column("rerated_version", BigInteger, nullable=False, server_default="0"),
    _ts("created_at"),
    _ts("updated_at"),
)

api_account = Table(
    "api_account",
    metadata,
    Column("database_id", Text, nullable=False),
    Column("api_account_id", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("daily_limit", Integer, nullable=True),
    Column("default_package", Text, nullable=True),
    # Client networks (CIDR) this account may read its feed, queries and recordings from;
    # NULL: any.
    Column("allowed_networks", ARRAY(Text), nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    PrimaryKeyConstraint("database_id", "api_account_id"),
    ForeignKeyConstraint(["database_id"], ["tenant.database_id"], ondelete="CASCADE"),
)

package = Table(
    "package",
    metadata,
    Column("database_id", Text, nullable=False),
    Column("package_id", Text, nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("route_id", Text, nullable=True),
    # The tenant's config_version when this package's sell deck was last replaced: a rater
    # reloading the tenant reads again only the decks whose version moved (cdr_rater.plans).
    Column("deck_version", BigInteger, nullable=False, server_default="0"),
    _ts("created_at"),
    _ts("updated_at"),
    PrimaryKeyConstraint("database_id", "package_id"),
    ForeignKeyConstraint(["database_id"], ["tenant.database_id"], ondelete="CASCADE"),
)

route = Table(
    "route",
    metadata,
    Column("database_id", Text, nullable=False),
    Column("route_id", Text, nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("deck_version", BigInteger, nullable=False, server_default="0"),  # as package's
    _ts("created_at"),
    _ts("updated_at"),
    PrimaryKeyConstraint("database_id", "route_id"),
    ForeignKeyConstraint(["database_id"], ["tenant.database_id"], ondelete="CASCADE"),
)

# One table for both kinds of deck: a package's sell deck and a route's cost deck.
rate_line = Table(
    "rate_line",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("database_id", Text, nullable=False),
    Column("deck_kind", Text, nullable=False),  # 'package' | 'route'
    Column("deck_id", Text, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("destination", Text, nullable=False, server_default=""),
    Column("rate", Numeric, nullable=False),
    Column("increment", Integer, nullable=False, server_default="60"),
    Column("initial_increment", Integer, nullable=True),
    Column("connect_fee", Numeric, nullable=False, server_default="0"),
    Column("effective_from", DateTime(timezone=True), nullable=True),
    Column("effective_to", DateTime(timezone=True), nullable=True),
    Column("direction", Text, nullable=False, server_default="outbound"),
    # Optional time-of-day band (e.g. "mon-fri 08:00-18:00"); null = any time.
    Column("time_band", Text, nullable=True),
    ForeignKeyConstraint(["database_id"], ["tenant.database_id"], ondelete="CASCADE"),
    Index(None, "database_id", "prefix"),
    Index(None, "database_id", "deck_kind", "deck_id"),
)

extension = Table(
    "extension",
    metadata,
    Column("database_id", Text, nullable=False),
    Column("extension", Text, nullable=False),
    Column("package_id", Text, nullable=True),
    Column("account", Text, nullable=True),
    Column("client", Text, nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    PrimaryKeyConstraint("database_id", "extension"),
    ForeignKeyConstraint(["database_id"], ["tenant.database_id"], ondelete="CASCADE"),
)

# The feed id is a change sequence: every (re)write of a CDR takes a new, larger id; this
# sequence gives the low bits of cdr_next_feed_id().
cdr_feed_seq = Sequence("cdr_feed_seq", metadata=metadata)

# Range-partitioned by month of cdr_id, a UUIDv7 whose first 48 bits are the millisecond
# ingest accepted it (migration cdr_partitions): `cdr_yYYYYmMM` partitions, created ahead by
# the rater (cdr_rater.partitions), and `cdr_default` for ids outside them. The partitions are
# made at run time and are not described here (`is_cdr_partition`).
cdr = Table(
    "cdr",
    metadata,
    # Assigned at ingest and carried by the event: a redelivered event hits this key.
    Column("cdr_id", UUID(as_uuid=True), primary_key=True),
    Column("database_id", Text, nullable=False),
    Column("api_account", Text, nullable=False),
    Column("external_id", Text, nullable=True),
    Column("source", Text, nullable=False, server_default="api"),
    Column("originating_number", Text, nullable=False),
    Column("destination_number", Text, nullable=False),
    Column("start_time", DateTime(timezone=True), nullable=True),
    Column("start_time_raw", Text, nullable=True),
    Column("duration", Integer, nullable=False),
    Column("disposition", Text, nullable=False),
    Column("ring_seconds", Integer, nullable=True),
    Column("account_code", Text, nullable=True),
    Column("extra", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("received_at", DateTime(timezone=True), nullable=False),
    # Rating outcome
    Column("rated", Boolean, nullable=False, server_default=text("false")),
    Column("unrated_reason", Text, nullable=True),
    Column("direction", Text, nullable=True),
    Column("extension", Text, nullable=True),
    Column("package_id", Text, nullable=True),
    Column("route_id", Text, nullable=True),
    Column("account", Text, nullable=True),
    Column("client", Text, nullable=True),
    Column("normalized_number", Text, nullable=True),
    Column("call_type", Text, nullable=True),
    Column("call_billing", Text, nullable=True),
    Column("destination_name", Text, nullable=True),
    Column("matched_prefix", Text, nullable=True),
    Column("billed_seconds", Integer, nullable=False, server_default="0"),
    Column("rate", Numeric, nullable=True),
    Column("total", AMOUNT, nullable=True),
    Column("cost", AMOUNT, nullable=True),
    Column("currency", Text, nullable=False, server_default="USD"),
    # cdr_next_feed_id() (migration queries_storage): the writing transaction's id above a
    # sequence value, so the feed can expose ids in an order no later commit undercuts.
    Column("feed_id", BigInteger, nullable=False, server_default=text("cdr_next_feed_id()")),
    # 1 when first stored; each re-rate that changes the record takes the next one (and a
    # new feed_id), and keeps what it replaced in cdr_revision.
    Column("revision", Integer, nullable=False, server_default="1"),
    # How the price came about (package and why, lines matched, increments, arithmetic),
    # written with the price so /explain shows it even after the deck was replaced.
    Column("pricing", JSONB, nullable=True),
    _ts("rated_at"),
    _ts("updated_at"),
    ForeignKeyConstraint(["database_id"], ["tenant.database_id"], ondelete="CASCADE"),
    # The seed-003 recording URL a PBX sent (`record`), served to allowed networks only.
    Column("recording_url", Text, nullable=True),
    # Not unique: a partitioned table's unique index must hold cdr_id, which makes it unique
    # already (migration cdr_partitions).
    Index(None, "database_id", "feed_id"),
    # Keyset paging of /v1/cdrs and the reports' date ranges; one account's or one reseller
    # client's calls in a range (getCDR, getResellerCDR).
    Index(None, "database_id", "start_time", "cdr_id"),
    Index(None, "database_id", "account", "start_time"),
    Index(None, "database_id", "client", "start_time"),
    Index(None, "database_id", "unrated_reason", postgresql_where=text("NOT rated")),
    # Re-rating walks a tenant's unrated records in cdr_id order, a batch at a time.
    Index(None, "database_id", "cdr_id", postgresql_where=text("NOT rated")),
    postgresql_partition_by="RANGE (cdr_id)",
)

_CDR_PARTITION = re.compile(r"cdr_(default|y\d{4}m\d{2})")


def is_cdr_partition(name: str | None) -> bool:
    """A partition of `cdr` (`cdr_y2026m12`, `cdr_default`): schema comparisons and
    autogenerate leave them out, plan checks count them as `cdr`."""
    return name is not None and _CDR_PARTITION.fullmatch(name) is not None


# The price history of a CDR: one row per re-rate, with what it replaced and why.
cdr_revision = Table(
    "cdr_revision",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("cdr_id", UUID(as_uuid=True), nullable=False),
    Column("database_id", Text, nullable=False),
    Column("revision", Integer, nullable=False),  # the revision this re-rate created
    Column("reason", Text, nullable=False),  # e.g. config_changed, start_time_corrected, rerate
    Column("old", JSONB, nullable=False),  # pricing fields before (money as 8-place strings)
    Column("new", JSONB, nullable=False),  # and after
    _ts("changed_at"),
    # Set once cdr.rated.v1 carried the new revision; a row left null (the process died
    # between the commit and the ack) is published again by the re-rating task.
    Column("published_at", DateTime(timezone=True), nullable=True),
    ForeignKeyConstraint(["cdr_id"], ["cdr.cdr_id"], ondelete="CASCADE"),
    UniqueConstraint("cdr_id", "revision"),
    Index(None, "database_id", "changed_at"),
    Index(None, "changed_at", postgresql_where=text("published_at IS NULL")),
)

subscription = Table(
    "subscription",
    metadata,
    Column("database_id", Text, nullable=False),
    Column("subscription_id", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("format", Text, nullable=False, server_default="json"),
    # A signing secret must be read back to sign, so it is stored encrypted, not hashed
    # (cdr_notifier.secretbox: a Fernet token under CDR_WEBHOOK_KEYS).
    Column("secret", Text, nullable=False),
    # The secret before the last rotation, also encrypted: it signs too until
    # previous_secret_until, so receivers can switch over (the header carries both).
    Column("previous_secret", Text, nullable=True),
    Column("previous_secret_until", DateTime(timezone=True), nullable=True),
    Column("filter", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("max_attempts", Integer, nullable=False, server_default="10"),
    Column("xmlrpc_method", Text, nullable=False, server_default="cdr.notify"),
    _ts("created_at"),
    _ts("updated_at"),
    PrimaryKeyConstraint("database_id", "subscription_id"),
    ForeignKeyConstraint(["database_id"], ["tenant.database_id"], ondelete="CASCADE"),
)

delivery = Table(
    "delivery",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("database_id", Text, nullable=False),
    Column("subscription_id", Text, nullable=False),
    Column("cdr_id", UUID(as_uuid=True), nullable=False),
    Column("feed_id", BigInteger, nullable=False),
    Column("webhook_id", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("payload", JSONB, nullable=False),
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    # W3C traceparent of the notifier's span for the event (cdrmodel.tracing): each push
    # continues the call's trace. NULL while tracing is off.
    Column("traceparent", Text, nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    ForeignKeyConstraint(
        ["database_id", "subscription_id"],
        ["subscription.database_id", "subscription.subscription_id"],
        ondelete="CASCADE",
    ),
    # A redelivered cdr.rated event finds its delivery already recorded.
    UniqueConstraint("database_id", "subscription_id", "cdr_id", "feed_id"),
    Index(None, "next_attempt_at", postgresql_where=text("status = 'pending'")),
    # The retention pruner's walk: deliveries that ended, oldest first.
    Index(None, "updated_at", postgresql_where=text("status <> 'pending'")),
)

delivery_attempt = Table(
    "delivery_attempt",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("delivery_id", BigInteger, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("http_status", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("response_excerpt", Text, nullable=True),  # the CRM's reply, its first 2 KiB
    ForeignKeyConstraint(["delivery_id"], ["delivery.id"], ondelete="CASCADE"),
    Index(None, "delivery_id"),
)


# A consumed record that its stage could not process, kept once with where it came from
# (written by cdrmodel.consumer in the transaction of the batch around it).
rejected_event = Table(
    "rejected_event",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("stage", Text, nullable=False),  # the consumer group that set it aside
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("key", BYTEA, nullable=True),
    Column("value", BYTEA, nullable=True),  # the message bytes exactly as consumed
    Column("reason", Text, nullable=False),  # malformed | unstorable | unknown_tenant | ...
    Column("error", Text, nullable=False, server_default=""),
    _ts("rejected_at"),
    # A batch replayed after a crash finds its rejections already kept and adds none.
    UniqueConstraint("stage", "topic", "partition", "offset"),
    Index(None, "stage", "id"),
)


# Ingest dedupe (contract §2 "Duplicate"): one row per submitted key, kept CDR_DEDUPE_DAYS.
# `key_hash` is sha256 of the canonical key (ExternalID, or the natural key); the row keeps
# the cdr_id first given to it so a retry of a never-acknowledged key re-produces that id.
ingest_key = Table(
    "ingest_key",
    metadata,
    Column("database_id", Text, nullable=False),
    Column("key_hash", BYTEA, nullable=False),
    Column("kind", SmallInteger, nullable=False),  # 1 ExternalID, 2 natural key
    Column("cdr_id", UUID(as_uuid=True), nullable=False),
    Column("api_account", Text, nullable=False),
    _ts("created_at"),
    # Null until a client was answered 0 for it: only then is a resubmission a 50421.
    Column("acknowledged_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("database_id", "key_hash"),
    Index(None, "created_at"),
)

# Ingest daily limits (contract §2 "Daily limit"): records accepted per API account and
# calendar day in the tenant's zone, raised by a conditional increment at admission.
ingest_usage = Table(
    "ingest_usage",
    metadata,
    Column("database_id", Text, nullable=False),
    Column("api_account", Text, nullable=False),
    Column("day", Date, nullable=False),
    Column("used", Integer, nullable=False),
    PrimaryKeyConstraint("database_id", "api_account", "day"),
    Index(None, "day"),
)


def make_engine(url: str, *, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    """The one engine of a process, created in the app's lifespan (never at import).

    `pre_ping` tests each connection with a round trip when it leaves the pool; without it,
    the first statement on a connection broken by a database restart fails (and the pool
    then replaces all its connections) instead.
    """
    # hide_parameters: statement errors must never carry secrets or passwords into logs.
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        hide_parameters=True,
    )


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error (asyncpg's, wrapped or not), else None.

    SQLAlchemy's asyncpg adapter maps few server errors to specific classes (a deadlock or a
    statement timeout arrives as a plain DBAPIError), so decisions read the code itself."""
    seen: BaseException | None = exc
    while seen is not None:
        for attr in ("sqlstate", "pgcode"):
            code = getattr(seen, attr, None)
            if isinstance(code, str) and code:
                return code
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


# SQLSTATE classes that are passing trouble: connection exception, transaction rollback
# (deadlock, serialization), insufficient resources, operator intervention (statement timeout,
# shutdown), lock not available.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
_TRANSIENT_CODES = frozenset({"55P03", "55006"})
# Classes a record's own values cause: data exception (bad value, out of range, NUL byte) and
# integrity constraint violation.
_RECORD_CLASSES = ("22", "23")


def is_transient(exc: BaseException) -> bool:
    """Trouble reaching or using PostgreSQL right now (retry later), as opposed to a
    statement it refused for what it said."""
    if isinstance(exc, OSError | TimeoutError | PoolTimeout | asyncpg.InterfaceError):
        return True
    code = sqlstate(exc)
    if code is not None:
        return code.startswith(_TRANSIENT_CLASSES) or code in _TRANSIENT_CODES
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    return False


def record_fault(exc: BaseException) -> bool:
    """PostgreSQL refused one of the record's values (SQLSTATE class 22 or 23), so retrying
    the same record can never succeed. Anything else (transient trouble, a schema the code does
    not match, a bug in our code) is not the record's fault: it must never get a record set
    aside, so the work is retried until an operator fixes the cause."""
    code = sqlstate(exc) if isinstance(exc, SQLAlchemyError) else None
    return code is not None and code.startswith(_RECORD_CLASSES)


def pg_text(value: str, limit: int) -> str:
    """`value` as PostgreSQL text can hold it: NUL shown as `\\x00` (text refuses NUL bytes),
    at most `limit` characters. For text that comes from outside (a CRM's reply, an error
    quoting a record) and is kept for people to read."""
    return value.replace("\x00", "\\x00")[:limit]


def sqlalchemy_url(url: str) -> str:
    """Accept plain libpq URLs too (postgres://, postgresql://): the driver is always asyncpg."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+asyncpg://" + url[len(scheme) :]
    return url


def asyncpg_dsn(url: str) -> str:
    """The plain libpq form of a SQLAlchemy URL, for asyncpg.connect / COPY."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
