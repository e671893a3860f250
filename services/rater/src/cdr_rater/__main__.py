"""`python -m cdr_rater`: the rating consumer and the admin API, served by uvicorn."""

from __future__ import annotations

from cdr_rater.app import create_app
from cdr_rater.settings import RaterSettings
from cdrmodel.web import serve


def main() -> None:
    serve(create_app, RaterSettings, "cdr_rater")


if __name__ == "__main__":
    main()
