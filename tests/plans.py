"""Reading the EXPLAIN plans of statements over `cdr`, which is partitioned by month of
`cdr_id` (migration cdr_partitions): a plan reads the partitions (`cdr_y2026m12`,
`cdr_default`) through their own indexes (`cdr_default_database_id_feed_id_idx`), each a
partition of an index of `cdr` (`ix_cdr_database_id_feed_id`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg

from cdrmodel.db import is_cdr_partition


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a JSON plan, at any depth (subplans, CTEs, union and append arms)."""
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


def reads_cdr(node: dict[str, Any]) -> bool:
    name = node.get("Relation Name")
    return name == "cdr" or is_cdr_partition(name)


# A Seq Scan of a partition that ANALYZE found to fill at most TINY_PAGES pages reads about
# what an index probe would (the descent and a heap page or two), and PostgreSQL rightly
# prefers it there: the months made ahead, empty, or a default holding a few stray rows. It
# plans again once autovacuum's ANALYZE of a filling partition invalidates the plan.
TINY_PAGES = 8
_TINY = f"""
SELECT coalesce(array_agg(c.relname::text), '{{}}') FROM pg_partition_tree('cdr') t
JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf AND c.relpages <= {TINY_PAGES}
"""
_INDEX_PARTITIONS = """
SELECT child.relname::text AS index, parent.relname::text AS of, t.relname::text AS partition
FROM pg_inherits i
JOIN pg_class child ON child.oid = i.inhrelid AND child.relkind = 'i'
JOIN pg_class parent ON parent.oid = i.inhparent
JOIN pg_index x ON x.indexrelid = child.oid
JOIN pg_class t ON t.oid = x.indrelid
"""


async def tiny_partitions(conn: asyncpg.Connection) -> frozenset[str]:
    """The partitions of cdr of at most TINY_PAGES pages, as the last ANALYZE found them."""
    return frozenset(await conn.fetchval(_TINY))


async def index_partitions(conn: asyncpg.Connection) -> dict[str, tuple[str, str]]:
    """Each partition's index -> (the index of cdr it is a partition of, the partition)."""
    return {r["index"]: (r["of"], r["partition"]) for r in await conn.fetch(_INDEX_PARTITIONS)}
