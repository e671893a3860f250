"""`python -m cdr_notifier`: pushes, subscriptions and query APIs, served by uvicorn."""

from __future__ import annotations

from cdr_notifier.app import create_app
from cdr_notifier.settings import NotifierSettings
from cdrmodel.web import serve


def main() -> None:
    serve(create_app, NotifierSettings, "cdr_notifier")


if __name__ == "__main__":
    main()
