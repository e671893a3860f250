"""Each tenant's rating configuration, held between batches and reloaded only when it changed.

A rater used to read extensions, default packages and the matching deck lines for every batch.
Now it keeps, per tenant, the whole `TenantPlan` (prefix indexes built once per version) and the
`tenant.config_version` it was loaded at. Every admin write bumps that version in its own
transaction, so one query per batch (the versions of the batch's tenants) tells every replica
what changed; the next batch after a deck upload is priced with the new deck, with no restart
and no message between replicas.

The version is read before the configuration is loaded, so a write that lands in between
makes the cached copy newer than its recorded version, never older: the next batch reloads it.

A reload reads again what is small (the tenant row, extensions, accounts, packages) and only
the decks whose `deck_version` moved: a new extension, or one deck replaced among a tenant's
many, does not rebuild the prefix index of a 200,000-line deck nobody touched, and the batches
waiting on the reload wait for the changed deck only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncConnection

from cdr_rater import repository
from cdr_rater.pricing import TenantPlan
from cdr_rater.repository import Decks

log = logging.getLogger(__name__)

RELOADS = Counter("cdrflow_rater_plan_loads_total", "Tenant plans (re)loaded into the cache")
LOAD_SECONDS = Histogram("cdrflow_rater_plan_load_seconds", "Time to load one tenant's plan")


@dataclass(frozen=True, slots=True)
class TenantConfig:
    """One tenant as rating sees it, at one config_version."""

    version: int
    timezone: str
    currency: str
    plan: TenantPlan
    default_packages: dict[str, str | None]
    decks: Decks  # the plan's decks by (kind, id), with the deck_version each was read at


class PlanCache:
    """Tenant configurations by database_id; a deleted tenant drops out on its next batch."""

    def __init__(self) -> None:
        self._tenants: dict[str, TenantConfig] = {}
        # One load of a tenant at a time: the consumer, re-rating and quotes share the cache,
        # and callers arriving during a reload wait for it rather than load the deck again.
        self._loading: dict[str, asyncio.Lock] = {}

    def __len__(self) -> int:
        return len(self._tenants)

    async def configs(
        self, conn: AsyncConnection, database_ids: Iterable[str]
    ) -> dict[str, TenantConfig]:
        """The current configuration of each tenant that exists among `database_ids`."""
        wanted = set(database_ids)
        versions = await repository.tenant_versions(conn, database_ids=sorted(wanted))
        out: dict[str, TenantConfig] = {}
        for database_id in wanted:
            version = versions.get(database_id)
            if version is None:
                self._tenants.pop(database_id, None)
                continue
            current = self._tenants.get(database_id)
            if current is None or current.version != version:
                current = None  # no reference kept: the old plan can go before the new loads
                async with self._loading.setdefault(database_id, asyncio.Lock()):
                    current = self._tenants.get(database_id)
                    if current is None or current.version < version:
                        current = None
                        current = await self._load(conn, database_id, version)
                if current is None:  # deleted since the version query
                    continue
            out[database_id] = current
        return out

    async def _load(
        self, conn: AsyncConnection, database_id: str, version: int
    ) -> TenantConfig | None:
        began = time.perf_counter()
        # Dropped first, but for its decks: load_tenant_config keeps the unchanged ones and
        # lets go of the changed ones before reading their replacements.
        old = self._tenants.pop(database_id, None)
        reuse = dict(old.decks) if old is not None else None
        del old
        loaded = await repository.load_tenant_config(conn, database_id=database_id, reuse=reuse)
        del reuse
        if loaded is None:
            return None
        row, plan, decks, defaults = loaded
        config = TenantConfig(version, row["timezone"], row["currency"], plan, defaults, decks)
        self._tenants[database_id] = config
        took = time.perf_counter() - began
        RELOADS.inc()
        LOAD_SECONDS.observe(took)
        log.info("tenant %s: plan version %d loaded in %.3f s", database_id, version, took)
        return config
