"""`python -m cdr_rater`: the rating consumer and the admin API, served by uvicorn."""

from __future__ import annotations

from cdr_rater.app import create_app
from cdr_rater.settings import RaterSettings
from cdrmodel.settings import Role
from cdrmodel.web import serve


def main(role: Role | None = None) -> None:
    """Also `cdrflow serve rater` (entry point group cdrflow.services); `role` wins over
    CDR_ROLE."""
    serve(create_app, RaterSettings, "cdr_rater", role=role)


if __name__ == "__main__":
    main()
