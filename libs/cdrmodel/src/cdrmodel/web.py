"""What every service's HTTP app has: health, readiness, metrics, JSON errors, admin auth."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cdrmodel.auth import token_matches
from cdrmodel.errors import CdrError, install_error_handlers
from cdrmodel.logs import configure_logging
from cdrmodel.settings import CommonSettings, load_settings

Check = Callable[[], Awaitable[bool]]


def database_check(engine: AsyncEngine, timeout: float = 3.0) -> Check:
    async def check() -> bool:
        try:
            async with asyncio.timeout(timeout), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any failure means not ready; the reason is in the DB log
            return False

    return check


class Readiness(BaseModel):
    """`/readyz`: one member per check (`ok` or `down`) besides `status`."""

    model_config = ConfigDict(extra="allow")

    status: str


def build_app(
    *,
    title: str,
    summary: str,
    lifespan: Callable[[FastAPI], Any],
    settings: CommonSettings,
    routers: list[APIRouter],
) -> FastAPI:
    """A service's FastAPI app: its lifespan and routers plus the common ops routes."""
    app = FastAPI(title=title, summary=summary, version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    add_common_routes(app)
    for router in routers:
        app.include_router(router)
    return app


def add_common_routes(app: FastAPI) -> None:
    """`/healthz`, `/readyz` (checks in app.state.checks), `/metrics`; JSON error handlers."""
    install_error_handlers(app)

    @app.get("/healthz", tags=["ops"], summary="200 while the process lives")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    ready_doc = {"model": Readiness, "description": "Each check `ok` or `down`, and `status`"}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="200 only while PostgreSQL and Kafka work",
        responses={200: ready_doc, 503: ready_doc},
    )
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, Check] = getattr(request.app.state, "checks", {})
        names = list(checks)
        results = await asyncio.gather(*(checks[n]() for n in names))
        body: dict[str, Any] = {
            n: ("ok" if r else "down") for n, r in zip(names, results, strict=True)
        }
        ready = bool(names) and all(results)
        body["status"] = "ready" if ready else "not ready"
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus text format",
        response_class=PlainTextResponse,
    )
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


_bearer = HTTPBearer(auto_error=False)


async def require_admin(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected: str = request.app.state.settings.admin_token
    if creds is None or not token_matches(creds.credentials, expected):
        raise CdrError("admin bearer token missing or wrong", status_code=401)


AdminDep = Depends(require_admin)


def serve(
    create_app: Callable[[Any], FastAPI], settings_cls: type[CommonSettings], service: str
) -> None:
    """`python -m cdr_<service>`: validated settings, JSON logs, one uvicorn worker."""
    import uvicorn

    settings = load_settings(settings_cls)
    configure_logging(settings.log_level, service=service)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,  # type: ignore[attr-defined]
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
