"""Which subscriptions a rated CDR goes to, and the delivery rows that records it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from cdrmodel.events import CdrRated

_WEBHOOK_NS = uuid.UUID("6f1d3a52-0c55-4c5e-9d55-6a3c1f0e2b77")


def webhook_id(database_id: str, subscription_id: str, cdr_id: uuid.UUID, feed_id: int) -> str:
    """Deterministic: the same delivery keeps its id on every retry and after a replay."""
    name = f"{database_id}/{subscription_id}/{cdr_id}/{feed_id}"
    return "msg_" + uuid.uuid5(_WEBHOOK_NS, name).hex


def matches(filter_: dict[str, Any], record: dict[str, Any]) -> bool:
    """A subscription's filter: every list given must contain the record's value."""
    call_types = filter_.get("call_types")
    if call_types and record.get("call_type") not in call_types:
        return False
    statuses = filter_.get("statuses")
    if statuses and not {record.get("status"), record.get("disposition")} & set(statuses):
        return False
    accounts = filter_.get("api_accounts")
    if accounts:
        login = f"{record.get('database_id')}/{record.get('api_account')}"
        if record.get("api_account") not in accounts and login not in accounts:
            return False
    return True


def deliveries_for(
    events: Iterable[CdrRated], subscriptions: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for sub in subscriptions:
        by_tenant.setdefault(sub["database_id"], []).append(sub)
    rows = []
    for event in events:
        for sub in by_tenant.get(event.database_id, ()):
            if matches(sub["filter"] or {}, event.record):
                rows.append(
                    {
                        "database_id": event.database_id,
                        "subscription_id": sub["subscription_id"],
                        "cdr_id": event.cdr_id,
                        "feed_id": event.feed_id,
                        "webhook_id": webhook_id(
                            event.database_id,
                            sub["subscription_id"],
                            event.cdr_id,
                            event.feed_id,
                        ),
                        "payload": event.record,
                    }
                )
    return rows
