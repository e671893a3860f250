"""Admin API bodies (`XUpsert`) and answers (`XRead`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdrmodel.money import known_currency
from cdrmodel.principals import MAX_NETWORKS, normalise_networks
from cdrmodel.validation import Identifier, Name, NonNegativeInt4, Secret


class TenantUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = ""
    timezone: Name = "UTC"
    country: Name = Field("US", description="ISO 3166 alpha-2 home country")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (KeyError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        value = value.upper()
        if phonenumbers.country_code_for_region(value) == 0:
            raise ValueError(f"unknown ISO 3166 alpha-2 country {value!r}")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not known_currency(value):
            raise ValueError(f"unknown ISO 4217 currency {value!r}")
        return value


class TenantRead(TenantUpsert):
    database_id: str
    config_version: int = Field(description="Bumped by every change to the tenant's setup")
    updated_at: datetime


class TenantList(BaseModel):
    tenants: list[TenantRead] = Field(description="Ordered by database_id")


class ApiAccountUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Secret | None = Field(
        None,
        description="Required to create the account; a new value rotates it (hashed with "
        "argon2, never returned); omitted: the stored password is kept",
    )
    daily_limit: NonNegativeInt4 | None = Field(1000, description="Records a day; null: none")
    default_package: Identifier | None = None
    allowed_networks: list[Name] | None = Field(
        None,
        max_length=MAX_NETWORKS,
        description="Client networks (CIDR, IPv4 or IPv6; a bare address is a /32 or /128) "
        "the account may read its feed, queries, reports and recordings from; stored "
        "normalised. null or omitted: from anywhere; []: from nowhere (a submit-only "
        "account). Submissions are never limited by it",
        examples=[["192.0.2.0/24", "2001:db8::/48"]],
    )

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else normalise_networks(value)


class ApiAccountRead(BaseModel):
    database_id: str
    api_account_id: str
    login: str
    daily_limit: int | None
    default_package: str | None
    allowed_networks: list[str] | None = Field(
        description="Networks reads are allowed from, normalised; null: anywhere"
    )
    updated_at: datetime


class ApiAccountList(BaseModel):
    api_accounts: list[ApiAccountRead] = Field(description="Ordered by api_account_id")


class PackageUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = ""
    route: Identifier | None = None


class PackageRead(PackageUpsert):
    database_id: str
    package_id: str
    updated_at: datetime


class PackageList(BaseModel):
    packages: list[PackageRead] = Field(description="Ordered by package_id")


class RouteUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = ""


class RouteRead(RouteUpsert):
    database_id: str
    route_id: str
    updated_at: datetime


class RouteList(BaseModel):
    routes: list[RouteRead] = Field(description="Ordered by route_id")


class ExtensionUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    package: Identifier | None = None
    account: Name | None = None
    client: Name | None = None


class ExtensionRead(ExtensionUpsert):
    database_id: str
    extension: str
    updated_at: datetime


class ExtensionList(BaseModel):
    extensions: list[ExtensionRead] = Field(description="Ordered by extension")


class DeckReplaced(BaseModel):
    deck: str
    lines: int


class RateLineRead(BaseModel):
    prefix: str
    destination: str
    rate: str = Field(description="Per minute, decimal string, 8 places")
    increment: int = Field(description="Seconds")
    initial_increment: int | None = Field(description="Seconds; null means the increment")
    connect_fee: str = Field(description="Decimal string, 8 places")
    effective_from: datetime | None
    effective_to: datetime | None
    direction: Literal["outbound", "inbound"]
    time_band: str | None = Field(description="Time-of-day band; null: any time")


class RateLines(BaseModel):
    rates: list[RateLineRead] = Field(description="A page of lines, ordered by prefix")
    next_offset: int | None = Field(description="`offset` of the next page; null: last page")
