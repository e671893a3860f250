"""`python -m cdr_notifier`: pushes, subscriptions and query APIs, served by uvicorn."""

from __future__ import annotations

from cdr_notifier.app import create_app
from cdr_notifier.settings import NotifierSettings
from cdrmodel.settings import Role
from cdrmodel.web import serve


def main(role: Role | None = None) -> None:
    """Also `cdrflow serve notifier` (entry point group cdrflow.services); `role` wins over
    CDR_ROLE."""
    serve(create_app, NotifierSettings, "cdr_notifier", role=role)


if __name__ == "__main__":
    main()
