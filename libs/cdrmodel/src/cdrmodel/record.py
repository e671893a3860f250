"""The stored record of contract §3: what a push carries and the query APIs return."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from cdrmodel.money import fmt8, minor_units

# Seed 003 statuses for our dispositions (the CSV export renders them in SQL from this too).
STATUS_OF_DISPOSITION = {
    "ANSWERED": "ANSWER",
    "NO ANSWER": "NOANSWER",
    "BUSY": "BUSY",
    "FAILED": "CHANUNAVAIL",
    "CONGESTION": "CONGESTION",
}


def _zone(name: str | None) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if name else None
    except (KeyError, ValueError):
        return None


def _sent(extra: Mapping[str, Any], key: str) -> str | None:
    """The PBX's own value for one of our text fields (`type`, `status`, `did`): a non-empty
    string, or a whole number as its digits (a PBX's JSON may carry a DID as a number).
    Anything else (0, false, a list, an object) is not a value for it, and ours serves."""
    value = extra.get(key)
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool) and value:
        return str(value)
    return None


def render_record(row: Mapping[str, Any], *, timezone: str | None = None) -> dict[str, Any]:
    """Build the record from a `cdr` row (column names of cdrmodel.db.cdr)."""
    extra: dict[str, Any] = dict(row.get("extra") or {})
    start: datetime | None = row.get("start_time")
    zone = _zone(timezone)
    if start is not None and zone is not None:
        start = start.astimezone(zone)
    inbound = row.get("direction") == "inbound"
    total = row.get("total")
    currency = row.get("currency") or "USD"
    cdr_id = str(row["cdr_id"])
    record: dict[str, Any] = dict(extra)  # whatever else the PBX sent, under ours
    record.update(
        caller=row["originating_number"],
        target=row["destination_number"],
        time=int(start.timestamp()) if start is not None else None,
        duration=row["duration"],
        ivruniqueid=row.get("external_id") or cdr_id,
        type=_sent(extra, "type") or ("Incoming Call" if inbound else "Extension Outgoing"),
        status=_sent(extra, "status")
        or STATUS_OF_DISPOSITION.get(row["disposition"], row["disposition"]),
        did=_sent(extra, "did") or (row["destination_number"] if inbound else ""),
        dialtime=row.get("ring_seconds") or 0,
        price=minor_units(total, currency) if total is not None else 0,
        cdr_id=cdr_id,
        external_id=row.get("external_id"),
        database_id=row["database_id"],
        api_account=row["api_account"],
        account=row.get("account"),
        extension=row.get("extension"),
        account_code=row.get("account_code"),
        start_time=start.isoformat() if start is not None else None,
        disposition=row["disposition"],
        direction=row.get("direction"),
        call_type=row.get("call_type"),
        call_billing=row.get("call_billing"),
        destination_name=row.get("destination_name"),
        matched_prefix=row.get("matched_prefix"),
        billed_seconds=row.get("billed_seconds") or 0,
        rate=fmt8(row.get("rate")),
        total=fmt8(total),
        cost=fmt8(row.get("cost")),
        currency=currency,
        rated=bool(row.get("rated")),
        unrated_reason=row.get("unrated_reason"),
        # 1 when first stored, one more with each re-rate that changed it: a client keeps
        # the highest it has seen of each cdr_id.
        revision=row.get("revision") or 1,
    )
    if row.get("start_time_raw") and start is None:
        record["start_time_raw"] = row["start_time_raw"]
    # Seed 003's name for it. Only when there is one: a record without a recording stays as
    # it was (no empty column in every CSV row's `extra`); rows stored before the column
    # existed show the `record` their `extra` kept.
    recording = row.get("recording_url")
    if recording:
        record["record"] = recording
    return record


def _document_record(schema: dict[str, Any]) -> None:
    # Not a model field: a field would be rendered `null` on every record without one.
    schema.setdefault("properties", {})["record"] = {
        "type": "string",
        "format": "uri",
        "description": "The call's recording URL (seed 003 `record`), when the PBX sent one; "
        "also served by GET /v1/cdrs/{cdr_id}/recording",
    }


class CdrRecord(BaseModel):
    """The stored record as it goes on the wire (OpenAPI documentation of `render_record`).

    Fields the PBX sent beyond these are kept as they came (additional properties), and
    `record`, the call's recording URL (seed 003), is there when the PBX sent one."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_document_record)

    caller: str
    target: str
    time: int | None = Field(description="Start, epoch seconds")
    duration: int
    ivruniqueid: str = Field(description="The external id, or the cdr id when none was sent")
    type: str
    status: str
    did: str
    dialtime: int
    price: int = Field(description="The total in the currency's minor unit")
    cdr_id: str
    external_id: str | None
    database_id: str
    api_account: str
    account: str | None
    extension: str | None
    account_code: str | None
    start_time: str | None = Field(description="ISO 8601 with offset, in the tenant's zone")
    disposition: str
    direction: str | None
    call_type: str | None
    call_billing: str | None
    destination_name: str | None
    matched_prefix: str | None
    billed_seconds: int
    rate: str | None = Field(description="Decimal string, 8 places")
    total: str | None = Field(description="Decimal string, 8 places")
    cost: str | None = Field(description="Decimal string, 8 places; null without a route")
    currency: str
    rated: bool
    unrated_reason: str | None
    revision: int = Field(
        1, description="1 when first stored, one more with each re-rate that changed it"
    )
