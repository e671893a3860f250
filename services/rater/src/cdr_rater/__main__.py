"""`python -m cdr_rater`: the rating consumer and the admin API, served by uvicorn."""

from __future__ import annotations

import uvicorn

from cdr_rater.app import create_app
from cdr_rater.settings import RaterSettings
from cdrmodel.logs import configure_logging
from cdrmodel.settings import load_settings


def main() -> None:
    settings = load_settings(RaterSettings)
    configure_logging(settings.log_level, service="cdr_rater")
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
