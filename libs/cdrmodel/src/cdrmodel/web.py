"""What every service's HTTP app has: health, readiness, metrics, JSON errors, admin auth."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cdrmodel import tracing
from cdrmodel.auth import token_matches
from cdrmodel.errors import CdrError, install_error_handlers
from cdrmodel.logs import configure_logging
from cdrmodel.observe import RequestObserver, bind_path_ids
from cdrmodel.settings import CommonSettings, Role, load_settings
from cdrmodel.supervisor import install_fatal_hook

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]]


@dataclass
class OpsState:
    """What every service's lifespan state carries under `ops`: the readiness checks, the
    admin token and the engine (for the shared ops routes such as rejected events)."""

    admin_token: str
    engine: AsyncEngine
    checks: dict[str, Check] = field(default_factory=dict)


def service_ops(
    *, admin_token: str, engine: AsyncEngine, kafka: Check, tasks: Check, **clients: Check
) -> OpsState:
    """The OpsState every service builds: the readiness checks database, kafka, then each of
    `clients` (producer, consumer: connected yet?), then tasks (no background task died)."""
    checks = {"database": database_check(engine), "kafka": kafka, **clients, "tasks": tasks}
    return OpsState(admin_token=admin_token, engine=engine, checks=checks)


def ops_state(request: Request) -> OpsState:
    """The app's OpsState (lifespan state); 503 before the lifespan has run."""
    ops = getattr(request.state, "ops", None)
    if not isinstance(ops, OpsState):
        raise CdrError("the service is not started", status_code=503)
    return ops


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
    routers: list[APIRouter],
    role: Role = "all",
) -> FastAPI:
    """A service's FastAPI app: its lifespan and routers plus the common ops routes.

    The lifespan yields its typed state as a dict (Starlette lifespan state) with an `ops`
    entry (OpsState); requests read it from `request.state`, never from `app.state`.
    A `worker` process keeps the ops routes (the orchestrator probes them, Prometheus
    scrapes them) and leaves the routers out: its business routes answer 404.
    """
    app = FastAPI(
        title=title,
        summary=summary,
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's native server spans when tracing is installed, else none at all.
        telemetry=tracing.fastapi_telemetry(),
    )
    add_common_routes(app)
    app.add_middleware(RequestObserver)  # request ids in logs, HTTP metrics by route template
    if role != "worker":
        for router in routers:
            app.include_router(router)
    return app


class Health(BaseModel):
    status: Literal["ok"]


def add_common_routes(app: FastAPI) -> None:
    """`/healthz`, `/readyz` (the OpsState checks), `/metrics`; JSON error handlers."""
    install_error_handlers(app)

    @app.get("/healthz", tags=["ops"], summary="200 while the process lives")
    async def healthz() -> Health:
        return Health(status="ok")

    ready_doc = {"model": Readiness, "description": "Each check `ok` or `down`, and `status`"}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="200 only while PostgreSQL and Kafka work and no background task has died",
        responses={200: ready_doc, 503: ready_doc},
    )
    async def readyz(request: Request) -> JSONResponse:
        ops = getattr(request.state, "ops", None)
        checks = ops.checks if isinstance(ops, OpsState) else {}
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
    expected = ops_state(request).admin_token
    if creds is None or not token_matches(creds.credentials, expected):
        raise CdrError("admin bearer token missing or wrong", status_code=401)
    bind_path_ids(request.path_params)


AdminDep = Depends(require_admin)


def serve(
    create_app: Callable[[Any], FastAPI],
    settings_cls: type[CommonSettings],
    service: str,
    *,
    role: Role | None = None,
) -> None:
    """`python -m cdr_<service>` and `cdrflow serve`: validated settings, JSON logs, one
    uvicorn worker. `role` (the `--role` option) wins over CDR_ROLE.

    A supervised background task that dies stops the server and the process exits 1, so the
    orchestrator restarts it rather than keeping a process that no longer works.
    """
    import uvicorn

    settings = load_settings(settings_cls)
    if role is not None:
        settings = settings.model_copy(update={"role": role})
    configure_logging(settings.log_level, service=service, fmt=settings.log_format)
    tracing.setup(settings, service=service)  # before the app: build_app reads it
    log.info("%s starting with role %s", service, settings.role)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,  # type: ignore[attr-defined]
            log_level=settings.log_level,
            log_config=None,  # uvicorn's own lines go through our handlers (JSON or console)
            access_log=False,
            # SIGTERM: open requests get this long to be answered; then the lifespan gives
            # the loops as long again to drain (Supervisor.stop).
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
            loop="uvloop",
            http="httptools",
        )
    )
    died: list[str] = []

    def fatal(name: str, exc: BaseException) -> None:
        died.append(name)
        server.should_exit = True

    install_fatal_hook(fatal)
    server.run()
    if died:
        log.critical("%s exits 1: background task(s) %s died", service, ", ".join(died))
        sys.exit(1)
    if not server.started:
        sys.exit(3)  # as uvicorn.run does when the app could not start
