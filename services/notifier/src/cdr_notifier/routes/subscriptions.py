"""Subscriptions and deliveries (contract §4), behind the admin bearer token."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from cdr_notifier import repository
from cdr_notifier.deps import StateDep
from cdr_notifier.formats import new_secret, valid_secret
from cdr_notifier.secretbox import SecretBox
from cdr_notifier.urls import check_url, endpoint_of
from cdrmodel.errors import NotFound, error_responses
from cdrmodel.repository import require_tenant
from cdrmodel.validation import INT8_MAX, Identifier, Name, Secret, UrlText
from cdrmodel.web import AdminDep

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1/admin/tenants",
    tags=["subscriptions"],
    dependencies=[AdminDep],
    responses=error_responses(400, 401, 404, 422, 503),
)


class SubscriptionFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_types: list[Name] | None = Field(None, max_length=100)
    statuses: list[Name] | None = Field(None, max_length=100)
    api_accounts: list[Name] | None = Field(None, max_length=1000)


class SubscriptionUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: UrlText
    format: Literal["json", "xmlrpc", "form"] = "json"
    secret: Secret | None = Field(
        None, description="`whsec_` + base64 of 24-64 random bytes; generated when absent"
    )
    filter: SubscriptionFilter = Field(default_factory=SubscriptionFilter)
    enabled: bool = True
    max_attempts: int = Field(10, ge=1, le=100)
    xmlrpc_method: str = Field(
        "cdr.notify",
        max_length=200,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="XML-RPC methodName: a dotted name of letters, digits and `_`",
    )

    @field_validator("secret")
    @classmethod
    def _standard_secret(cls, value: str | None) -> str | None:
        if value is not None and not valid_secret(value):
            raise ValueError(
                "secret must be whsec_ followed by base64 of 24 to 64 bytes "
                "(the Standard Webhooks format, so receivers' libraries verify it)"
            )
        return value


class SubscriptionRead(BaseModel):
    database_id: str
    subscription_id: str
    url: str
    format: str
    filter: dict[str, Any]
    enabled: bool
    max_attempts: int
    xmlrpc_method: str
    secret: str | None = Field(None, description="Only in the answer that created it")


@router.put(
    "/{database_id}/subscriptions/{subscription_id}",
    response_model=SubscriptionRead,
    response_model_exclude_none=True,
    summary="Create or update a push subscription (a generated secret is returned once)",
)
async def put_subscription(
    database_id: Identifier, subscription_id: Identifier, body: SubscriptionUpsert, state: StateDep
) -> SubscriptionRead:
    await check_url(body.url, allow_private=state.allow_private_webhooks)
    values: dict[str, Any] = {
        "url": body.url,
        "format": body.format,
        "filter": body.filter.model_dump(exclude_none=True),
        "enabled": body.enabled,
        "max_attempts": body.max_attempts,
        "xmlrpc_method": body.xmlrpc_method,
    }
    generated = None
    keys = {"database_id": database_id, "subscription_id": subscription_id}
    box = state.secrets
    async with state.engine.begin() as conn:
        await require_tenant(conn, database_id)
        existing = await repository.subscription_secret(conn, **keys, lock=True)
        if body.secret is not None and existing is None:
            values["secret"] = box.seal(body.secret)
        elif body.secret is not None and box.open(existing or "") != body.secret:
            values.update(_rotated(box, existing, body.secret))
        elif existing is None:
            generated = new_secret()
            values["secret"] = box.seal(generated)
        await repository.upsert_subscription(conn, **keys, values=values, current_secret=existing)
    # The URL is left out: it may carry credentials (`https://user:pass@crm/...`).
    log.info("subscription %s/%s saved, pushing to %s", *keys.values(), endpoint_of(body.url))
    return SubscriptionRead(
        database_id=database_id,
        subscription_id=subscription_id,
        secret=generated,
        **{k: v for k, v in values.items() if not k.startswith(("secret", "previous_secret"))},
    )


# How long the secret before a rotation keeps signing beside the new one.
ROTATION_OVERLAP = timedelta(hours=24)


def _rotated(box: SecretBox, previous: str | None, secret: str) -> dict[str, Any]:
    """The columns of a rotation: the new secret, the old one signing for 24 h more."""
    return {
        "secret": box.seal(secret),
        "previous_secret": previous,
        "previous_secret_until": datetime.now(UTC) + ROTATION_OVERLAP,
    }


class SecretRotated(BaseModel):
    secret: str = Field(description="The new secret: shown this once")
    previous_valid_until: datetime = Field(
        description="Until then pushes carry a signature with the previous secret too"
    )


@router.post(
    "/{database_id}/subscriptions/{subscription_id}/rotate-secret",
    response_model=SecretRotated,
    summary="Generate a new signing secret; the previous one keeps signing for 24 h",
)
async def rotate_secret(
    database_id: Identifier, subscription_id: Identifier, state: StateDep
) -> SecretRotated:
    keys = {"database_id": database_id, "subscription_id": subscription_id}
    secret = new_secret()
    async with state.engine.begin() as conn:
        existing = await repository.subscription_secret(conn, **keys, lock=True)
        if existing is None:
            raise repository.subscription_not_found(database_id, subscription_id)
        values = _rotated(state.secrets, existing, secret)
        await repository.set_secrets(conn, **keys, values=values)
    log.info("subscription %s/%s: secret rotated", *keys.values())
    return SecretRotated(secret=secret, previous_valid_until=values["previous_secret_until"])


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionRead] = Field(description="By subscription_id")


@router.get(
    "/{database_id}/subscriptions",
    response_model=SubscriptionList,
    response_model_exclude_none=True,
    summary="A tenant's subscriptions (never their secrets)",
)
async def list_subscriptions(database_id: Identifier, state: StateDep) -> SubscriptionList:
    async with state.engine.connect() as conn:
        await require_tenant(conn, database_id)
        rows = await repository.list_subscriptions(conn, database_id=database_id)
    return SubscriptionList(subscriptions=[_read(r) for r in rows])


@router.delete(
    "/{database_id}/subscriptions/{subscription_id}",
    status_code=204,
    summary="Delete a subscription with its deliveries and their attempts",
)
async def delete_subscription(
    database_id: Identifier, subscription_id: Identifier, state: StateDep
) -> Response:
    async with state.engine.begin() as conn:
        found = await repository.delete_subscription(
            conn, database_id=database_id, subscription_id=subscription_id
        )
    if not found:
        raise repository.subscription_not_found(database_id, subscription_id)
    return Response(status_code=204)


def _read(row: dict[str, Any]) -> SubscriptionRead:
    return SubscriptionRead(
        **{k: row[k] for k in SubscriptionRead.model_fields if k in row and k != "secret"}
    )


@router.get(
    "/{database_id}/subscriptions/{subscription_id}",
    response_model=SubscriptionRead,
    response_model_exclude_none=True,
)
async def get_subscription(
    database_id: Identifier, subscription_id: Identifier, state: StateDep
) -> SubscriptionRead:
    async with state.engine.connect() as conn:
        row = await repository.get_subscription(
            conn, database_id=database_id, subscription_id=subscription_id
        )
    if row is None:
        raise repository.subscription_not_found(database_id, subscription_id)
    return _read(row)


class AttemptRead(BaseModel):
    at: datetime
    http_status: int | None
    latency_ms: int
    error: str | None = Field(description="Why the attempt failed; null when it succeeded")
    response_excerpt: str | None = Field(
        None, description="The start of the CRM's reply (2 KiB at most); null without one"
    )


class DeliveryRead(BaseModel):
    id: int
    cdr_id: str
    webhook_id: str = Field(description="The same on every attempt and replay of this delivery")
    status: Literal["pending", "delivered", "dead"]
    attempts: list[AttemptRead] = Field(description="Oldest first")


class DeliveryList(BaseModel):
    deliveries: list[DeliveryRead] = Field(description="Newest first")
    next_before_id: int | None = Field(description="Pass as before_id for the next page")


class DeliveryReplayed(BaseModel):
    id: int
    status: Literal["pending"]


class ReplayedSince(BaseModel):
    replayed: int = Field(description="How many deliveries are due again")


@router.get(
    "/{database_id}/subscriptions/{subscription_id}/deliveries", response_model=DeliveryList
)
async def list_deliveries(
    database_id: Identifier,
    subscription_id: Identifier,
    state: StateDep,
    status: Literal["pending", "delivered", "dead"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = Query(
        None, ge=0, le=INT8_MAX, description="Cursor: deliveries with a smaller id"
    ),
) -> DeliveryList:
    async with state.engine.connect() as conn:
        await repository.require_subscription(
            conn, database_id=database_id, subscription_id=subscription_id
        )
        rows = await repository.list_deliveries(
            conn,
            database_id=database_id,
            subscription_id=subscription_id,
            status=status,
            before_id=before_id,
            limit=limit,
        )
    return DeliveryList(
        deliveries=[
            DeliveryRead(
                id=r["id"],
                cdr_id=str(r["cdr_id"]),
                webhook_id=r["webhook_id"],
                status=r["status"],
                attempts=[AttemptRead.model_validate(a) for a in r["attempts"]],
            )
            for r in rows
        ],
        next_before_id=rows[-1]["id"] if len(rows) == limit else None,
    )


@router.post(
    "/{database_id}/subscriptions/{subscription_id}/deliveries/{delivery_id}/replay",
    response_model=DeliveryReplayed,
)
async def replay_delivery(
    database_id: Identifier,
    subscription_id: Identifier,
    delivery_id: Annotated[int, Path(ge=0, le=INT8_MAX)],
    state: StateDep,
) -> DeliveryReplayed:
    async with state.engine.begin() as conn:
        found = await repository.replay_delivery(
            conn,
            database_id=database_id,
            subscription_id=subscription_id,
            delivery_id=delivery_id,
        )
    if not found:
        raise NotFound(f"delivery {delivery_id} not found in subscription {subscription_id!r}")
    state.wake.set()
    return DeliveryReplayed(id=delivery_id, status="pending")


class ReplaySince(BaseModel):
    since: AwareDatetime


@router.post("/{database_id}/subscriptions/{subscription_id}/replay", response_model=ReplayedSince)
async def replay_since(
    database_id: Identifier, subscription_id: Identifier, body: ReplaySince, state: StateDep
) -> ReplayedSince:
    """Push again every delivery of this subscription created since `since`."""
    keys = {"database_id": database_id, "subscription_id": subscription_id}
    async with state.engine.begin() as conn:
        await repository.require_subscription(conn, **keys)
        replayed = await repository.replay_since(conn, **keys, since=body.since)
    state.wake.set()
    return ReplayedSince(replayed=replayed)
