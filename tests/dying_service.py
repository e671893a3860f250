"""A minimal service whose one background task dies: `python -m tests.dying_service` proves
that `cdrmodel.web.serve` turns a task's death into a non-zero exit, with nothing faked in
the machinery (real uvicorn, real supervisor, real /readyz)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import Field

from cdrmodel.db import make_engine
from cdrmodel.settings import CommonSettings
from cdrmodel.supervisor import Supervisor
from cdrmodel.web import OpsState, build_app, serve

FAILURE = "the consumer lost its footing"


class DyingSettings(CommonSettings):
    port: int = Field(0, description="HTTP port (CDR_PORT).")
    doom_after: float = Field(1.0, description="Seconds until the task dies (CDR_DOOM_AFTER).")


def create_app(settings: DyingSettings, *, trigger: asyncio.Event | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        engine = make_engine(settings.database_url, pool_size=1)
        supervisor = Supervisor("dying")

        async def doomed() -> None:
            if trigger is not None:
                await trigger.wait()
            else:
                await asyncio.sleep(settings.doom_after)
            raise RuntimeError(FAILURE)

        supervisor.spawn("doomed", doomed())
        ops = OpsState(
            admin_token=settings.admin_token, engine=engine, checks={"tasks": supervisor.check}
        )
        try:
            yield {"ops": ops}
        finally:
            await supervisor.stop()
            await engine.dispose()

    return build_app(title="dying", summary="test service", lifespan=lifespan, routers=[])


if __name__ == "__main__":
    serve(create_app, DyingSettings, "dying")
