"""`python -m cdr_ingest`: serve the ingest API with uvicorn."""

from __future__ import annotations

import uvicorn

from cdr_ingest.app import create_app
from cdr_ingest.settings import IngestSettings
from cdrmodel.logs import configure_logging
from cdrmodel.settings import load_settings


def main() -> None:
    settings = load_settings(IngestSettings)
    configure_logging(settings.log_level, service="cdr_ingest")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
