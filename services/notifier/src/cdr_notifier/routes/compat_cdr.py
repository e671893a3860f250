"""`GET|POST /api/cdr?action=...`: the WHMCS CDR functions of seed 002 for API accounts.

Every answer is `{"status": "success", ...}` in the seed's shapes, or `{"status": "error",
"message": ...}` naming the parameter at fault: this endpoint never answers FastAPI's
validation body, so it declares no parameters for FastAPI to check and reads them itself
(query string, and for POST a form body). Statuses are in docs/queries.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException as StarletteHTTPException

from cdr_notifier import compat
from cdr_notifier import compat_repository as repo
from cdr_notifier.compat import ParamError
from cdr_notifier.deps import NotifierState, StateDep, reader
from cdrmodel.db import is_transient
from cdrmodel.principals import ACCOUNT_UNKNOWN, DB_UNKNOWN, AddressRefused, AuthError, Principal

router = APIRouter(tags=["queries"])

Params = dict[str, str]
# An action's answer (after "status") and whether it was cut at its row limit.
Answer = tuple[dict[str, Any], bool]
Action = Callable[[AsyncConnection, Principal, Params], Awaitable[Answer]]

# A form body holds a handful of short fields; anything near this is not a WHMCS call.
_MAX_BODY = 64 * 1024
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"status": "error", "message": message}, status_code=status, headers=headers
    )


async def _params(request: Request) -> Params:
    """Query string, then (POST) the form body over it; names lower-cased."""
    params = {k.lower(): v for k, v in request.query_params.items()}
    if request.method != "POST":
        return params
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(_FORM_TYPES):
        return params
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > _MAX_BODY:
        raise ParamError(f"body: larger than {_MAX_BODY} bytes", status=413)
    try:
        form = await request.form(max_files=0, max_fields=100, max_part_size=_MAX_BODY)
    except StarletteHTTPException as exc:  # a form Starlette cannot read
        raise ParamError(f"body: {exc.detail}") from None
    for key, value in form.items():
        if isinstance(value, str):
            params[key.lower()] = value
    return params


async def _call_accounts(conn: AsyncConnection, who: Principal, params: Params) -> Answer:
    client = compat.text_param(params, "client")
    names = await repo.call_accounts(conn, database_id=who.database_id, client=client)
    return {"accounts": compat.account_options(names)}, False


async def _call_billing(conn: AsyncConnection, who: Principal, params: Params) -> Answer:
    return {"call_billing": compat.CALL_BILLING}, False


async def _call_types(conn: AsyncConnection, who: Principal, params: Params) -> Answer:
    client = compat.text_param(params, "client")
    found = await repo.numbers(
        conn, database_id=who.database_id, client=client, limit=compat.MAX_LIMIT
    )
    return {"call_types": compat.call_type_options(found)}, False


def _cdr_action(*, reseller: bool) -> Action:
    async def run(conn: AsyncConnection, who: Principal, params: Params) -> Answer:
        query = compat.cdr_query(params, reseller=reseller)
        rows = await repo.find_cdrs(conn, database_id=who.database_id, query=query)
        entries = [
            compat.cdr_entry(r, offset_minutes=query.offset_minutes, with_rate=not reseller)
            for r in rows[: query.limit]
        ]
        return {"cdr": entries}, len(rows) > query.limit

    return run


async def _rates(conn: AsyncConnection, who: Principal, params: Params) -> Answer:
    package_id = compat.text_param(params, "package", required=True)
    search = compat.rate_search(params)
    limit = compat.limit_param(params)
    assert package_id is not None
    exists, route_id = await repo.package_route(
        conn, database_id=who.database_id, package_id=package_id
    )
    if not exists:
        raise ParamError(f"package: no package {package_id!r}", status=404)
    rows = await repo.package_rates(
        conn,
        database_id=who.database_id,
        package_id=package_id,
        route_id=route_id,
        query=search,
        limit=limit,
    )
    return {"rates": compat.package_rate_entries(rows[:limit])}, len(rows) > limit


async def _termination_rates(conn: AsyncConnection, who: Principal, params: Params) -> Answer:
    route_id = compat.text_param(params, "route", required=True)
    search = compat.rate_search(params)
    limit = compat.limit_param(params)
    assert route_id is not None
    name = await repo.route_name(conn, database_id=who.database_id, route_id=route_id)
    if name is None:
        raise ParamError(f"route: no route {route_id!r}", status=404)
    rows = await repo.route_rates(
        conn, database_id=who.database_id, route_id=route_id, query=search, limit=limit
    )
    return {
        "route": {"value": route_id, "description": name},
        "rates": compat.route_rate_entries(rows[:limit]),
    }, len(rows) > limit


_ACTIONS: dict[str, Action] = {
    "getCallAccounts": _call_accounts,
    "getCallBilling": _call_billing,
    "getCallTypes": _call_types,
    "getCDR": _cdr_action(reseller=False),
    "getRates": _rates,
    "getTerminationRates": _termination_rates,
    "getResellerCDR": _cdr_action(reseller=True),
}
assert tuple(_ACTIONS) == compat.ACTIONS


def _auth_message(exc: AuthError) -> str:
    where = "login" if exc.code in (DB_UNKNOWN, ACCOUNT_UNKNOWN) else "password"
    return f"{where}: {exc.message}"


async def _answer(request: Request, state: NotifierState) -> Response:
    try:
        params = await _params(request)
        principal = await reader(request, state, params.get("login"), params.get("password"))
        run = _ACTIONS[compat.action_name(params)]
        async with state.engine.connect() as conn:
            body, truncated = await run(conn, principal, params)
    except ParamError as exc:
        return _error(exc.status, exc.message)
    except AddressRefused as exc:
        return _error(403, exc.message)
    except AuthError as exc:
        return _error(401, _auth_message(exc), **{"WWW-Authenticate": "Basic"})
    except DBAPIError as exc:
        if not is_transient(exc):
            raise
        return _error(503, "database unavailable, retry later", **{"Retry-After": "5"})
    headers = {"X-Result-Truncated": "true"} if truncated else None
    # orjson: a day of calls is thousands of entries, and the standard encoder took longer
    # than the query (measured in the queries bench).
    return Response(
        orjson.dumps({"status": "success", **body}),
        media_type="application/json",
        headers=headers,
    )


class CompatAnswer(BaseModel):
    """`{"status": "success", ...}`: the other keys are the action's (seed 002)."""

    model_config = ConfigDict(extra="allow")
    status: str = Field(examples=["success"])


class CompatError(BaseModel):
    """`{"status": "error", "message": ...}`; the message names the parameter."""

    status: str = Field(examples=["error"])
    message: str


def _error_doc(description: str) -> dict[str, Any]:
    return {"model": CompatError, "description": description}


_DOC: dict[str, Any] = {
    "summary": "WHMCS CDR functions (seed 002): getCDR, getRates, ... by `action`",
    "description": "Parameters in the query string or, for POST, a form body; credentials as "
    "HTTP Basic (`DB/ACCOUNT`) or `login` and `password`. Answers "
    '`{"status": "success", ...}` or `{"status": "error", "message": ...}` (400 a parameter, '
    "401 credentials, 403 an address outside the account's allowed_networks, 404 an unknown "
    "package or route, 413 a body too large, 503 the database unreachable). See "
    "docs/queries.md.",
    "responses": {
        200: {"model": CompatAnswer, "description": "In the shape of the action (seed 002)"},
        400: _error_doc("A parameter missing or invalid, or an unknown action"),
        401: _error_doc("Credentials missing or wrong"),
        403: _error_doc("The account's allowed_networks do not take in the caller's address"),
        404: _error_doc("The package or route is not the tenant's"),
        413: _error_doc("The form body is too large"),
        503: _error_doc("PostgreSQL unreachable; retry later"),
    },
    "openapi_extra": {
        "parameters": [
            {
                "name": "action",
                "in": "query",
                "required": True,
                "schema": {"type": "string", "enum": list(compat.ACTIONS)},
            },
            *(
                {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                for name in (
                    "login",
                    "password",
                    "date_from",
                    "date_to",
                    "timezone",
                    "answered",
                    "noanswer",
                    "busy",
                    "failed",
                    "calltype",
                    "callbilling",
                    "account",
                    "client",
                    "package",
                    "route",
                    "query",
                    "limit",
                )
            ),
        ]
    },
}


# Two operations, not one api_route: each method gets its own operationId.
@router.get("/api/cdr", operation_id="api_cdr_get", **_DOC)
async def api_cdr_get(request: Request, state: StateDep) -> Response:
    return await _answer(request, state)


@router.post("/api/cdr", operation_id="api_cdr_post", **_DOC)
async def api_cdr_post(request: Request, state: StateDep) -> Response:
    return await _answer(request, state)
