"""Admin API bodies (`XUpsert`) and answers (`XRead`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdrmodel.money import known_currency
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


class ApiAccountUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Secret
    daily_limit: NonNegativeInt4 | None = Field(1000, description="Records a day; null: none")
    default_package: Identifier | None = None


class ApiAccountRead(BaseModel):
    database_id: str
    api_account_id: str
    login: str
    daily_limit: int | None
    default_package: str | None


class PackageUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = ""
    route: Identifier | None = None


class PackageRead(PackageUpsert):
    database_id: str
    package_id: str


class RouteUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = ""


class RouteRead(RouteUpsert):
    database_id: str
    route_id: str


class ExtensionUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    package: Identifier | None = None
    account: Name | None = None
    client: Name | None = None


class ExtensionRead(ExtensionUpsert):
    database_id: str
    extension: str


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


class RateLines(BaseModel):
    rates: list[RateLineRead] = Field(description="Ordered by prefix, at most 10,000 lines")
