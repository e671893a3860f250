"""Bodies and answers of the quote and explain routes (the explanation's shape is explain.py's)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cdrmodel.validation import PhoneText

Disposition = Literal["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"]
Money = str  # a fixed-point decimal string with 8 places


class QuoteRequest(BaseModel):
    """A hypothetical call, in the field names of `POST /v1/cdrs` (contract §2)."""

    model_config = ConfigDict(extra="forbid")

    originating_number: PhoneText
    destination_number: PhoneText
    start_time: datetime = Field(
        description="ISO 8601; without an offset, in the tenant's time zone"
    )
    duration: int = Field(ge=0, le=86400, description="Seconds")
    disposition: Disposition | None = Field(
        None, description="Default ANSWERED when duration > 0, else NO ANSWER"
    )


class CallRead(BaseModel):
    originating_number: str
    destination_number: str
    start_time: str | None = Field(description="ISO 8601 with offset")
    duration: int
    disposition: str


class PackageChoice(BaseModel):
    """Rule 1: which package priced the call, and why that one."""

    id: str | None
    why: Literal["extension", "default_package", "none"]
    extension: str | None = Field(description="The tenant's extension whose package applied")
    route: str | None = Field(description="The package's route (termination deck)")


class LineRead(BaseModel):
    """The deck line as it was when the call was priced."""

    prefix: str
    destination: str | None
    direction: str
    rate: Money = Field(description="Per minute")
    connect_fee: Money
    initial_increment: int
    increment: int
    effective_from: str | None
    effective_to: str | None
    time_band: str | None = Field(description="null: any time of day")


class IncrementsRead(BaseModel):
    """Rule 4 applied: billed seconds from the duration and the line's increments."""

    duration: int
    answered: bool
    initial_increment: int
    increment: int
    further_increments: int = Field(description="Whole increments after the initial one")
    billed_seconds: int
    rule: str = Field(description="The branch of rule 4 that applied, with its numbers")


class PricedRead(BaseModel):
    """One side of the price (sell deck) or the cost (termination deck), worked out."""

    line: LineRead
    increments: IncrementsRead
    formula: str
    arithmetic: str = Field(description="The formula with this call's decimal strings")
    rounding: str
    total: Money


class Explanation(BaseModel):
    """How a price came about (or why there is none): package, number, lines, arithmetic."""

    version: int
    rated: bool
    unrated_reason: str | None
    call: CallRead
    direction: str
    package: PackageChoice
    normalized_number: str | None
    matched_prefix: str | None
    destination_name: str | None
    call_type: str | None
    call_billing: str | None
    free_because: Literal["on_net", "no_inbound_line"] | None
    billed_seconds: int
    rate: Money | None
    total: Money | None
    cost: Money | None
    margin: Money | None
    sell: PricedRead | None = Field(description="The price from the package's deck")
    termination: PricedRead | None = Field(description="The cost from the route's deck")


class QuoteRead(BaseModel):
    """What the call would be stored with, and how that price comes about. Nothing stored."""

    rated: bool
    unrated_reason: str | None
    call_type: str | None
    call_billing: str | None
    destination_name: str | None
    matched_prefix: str | None
    billed_seconds: int
    rate: Money | None
    total: Money | None = Field(description="The price (as `total` in the stored record)")
    cost: Money | None
    margin: Money | None
    currency: str
    explanation: Explanation


class RevisionRead(BaseModel):
    """One re-rate of the record: what it replaced, with what, when and why."""

    revision: int = Field(description="The revision this re-rate created")
    reason: str
    changed_at: datetime
    old: dict[str, Any]
    new: dict[str, Any]


class ExplainRead(BaseModel):
    cdr_id: uuid.UUID
    revision: int
    rated: bool
    unrated_reason: str | None
    start_time: datetime | None = Field(description="In the tenant's time zone")
    total: Money | None
    cost: Money | None
    currency: str
    explanation: Explanation | None = Field(
        description="How the current price came about; null for records priced before "
        "explanations were kept"
    )
    history: list[RevisionRead] = Field(description="Re-rates, oldest first")
