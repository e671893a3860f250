"""Rating a batch of submitted CDRs: pure domain logic around `pricing` (no I/O here).

The consumer (cdr_rater/consumer.py) takes each tenant's cached configuration (`TenantPlan`,
default packages; cdr_rater/plans.py) inside the batch's transaction, calls `rate_events`, stores
the rows it returns and, after the commit, publishes `rated_event` of each stored row.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cdr_rater.explain import describe
from cdr_rater.pricing import Call, Rating, TenantPlan, rate_call
from cdrmodel.events import CdrRated, CdrSubmitted
from cdrmodel.money import storable
from cdrmodel.record import render_record

log = logging.getLogger(__name__)


def _row(event: CdrSubmitted, rating: Rating, *, currency: str, now: datetime) -> dict[str, Any]:
    return {
        "cdr_id": event.cdr_id,
        "database_id": event.database_id,
        "api_account": event.api_account,
        "external_id": event.external_id,
        "source": event.source,
        "originating_number": event.originating_number,
        "destination_number": event.destination_number,
        "start_time": event.start_time,
        "start_time_raw": event.start_time_raw,
        "duration": event.duration,
        "disposition": event.disposition,
        "ring_seconds": event.ring_seconds,
        "account_code": event.account_code,
        "extra": event.extra,
        "recording_url": event.recording_url,
        "received_at": event.received_at,
        "rated": rating.rated,
        "unrated_reason": rating.unrated_reason,
        "direction": rating.direction,
        "extension": rating.extension,
        "package_id": rating.package_id,
        "route_id": rating.route_id,
        "account": rating.account,
        "client": rating.client,
        "normalized_number": rating.number,
        "call_type": rating.call_type,
        "call_billing": rating.call_billing,
        "destination_name": rating.destination_name,
        "matched_prefix": rating.matched_prefix,
        "billed_seconds": rating.billed_seconds,
        "rate": rating.rate,
        "total": rating.total,
        "cost": rating.cost,
        "pricing": describe(_call(event), rating),
        "currency": currency,
        "rated_at": now,
        "updated_at": now,
    }


def _rate(cdr_id: uuid.UUID, call: Call, plan: TenantPlan, default_package: str | None) -> Rating:
    """Rating never stops a batch: a fault in it holds the record unrated, to be re-rated."""
    try:
        rating = rate_call(call, plan, default_package=default_package)
    except (ArithmeticError, ValueError) as exc:
        # `extra`, not the log context: binding per record would cost every record of a batch.
        log.error("rating %s failed: %r", cdr_id, exc, extra={"cdr_id": str(cdr_id)})
        return Rating(rated=False, unrated_reason="rating_error")
    if not all(storable(v) for v in (rating.total, rating.cost) if v is not None):
        # A price NUMERIC(20, 8) cannot hold: kept unrated (fix the deck, then re-rate),
        # never a record PostgreSQL refuses.
        log.error(
            "rating %s gave an amount beyond 10^12: held unrated",
            cdr_id,
            extra={"cdr_id": str(cdr_id)},
        )
        return Rating(rated=False, unrated_reason="amount_out_of_range")
    return rating


def _call(event: CdrSubmitted) -> Call:
    return Call(
        originating=event.originating_number,
        destination=event.destination_number,
        start_time=event.start_time,
        duration=event.duration,
        disposition=event.disposition,
    )


def rate_events(
    events: Sequence[CdrSubmitted],
    plan: TenantPlan,
    *,
    default_packages: Mapping[str, str | None],
    currency: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """One `cdr` row per event, priced or held unrated with a reason."""
    return [
        _row(
            ev,
            _rate(ev.cdr_id, _call(ev), plan, default_packages.get(ev.api_account)),
            currency=currency,
            now=now,
        )
        for ev in events
    ]


def rated_event(row: Mapping[str, Any], *, timezone: str) -> CdrRated:
    """The cdr.rated.v1 event of a stored row: the contract's record, in the tenant's zone."""
    return CdrRated(
        cdr_id=row["cdr_id"],
        database_id=row["database_id"],
        feed_id=row["feed_id"],
        revision=row.get("revision", 1),
        record=render_record(row, timezone=timezone),
    )
