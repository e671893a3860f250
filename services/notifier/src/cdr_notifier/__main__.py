"""`python -m cdr_notifier`: pushes, subscriptions and query APIs, served by uvicorn."""

from __future__ import annotations

import uvicorn

from cdr_notifier.app import create_app
from cdr_notifier.settings import NotifierSettings
from cdrmodel.logs import configure_logging
from cdrmodel.settings import load_settings


def main() -> None:
    settings = load_settings(NotifierSettings)
    configure_logging(settings.log_level, service="cdr_notifier")
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
