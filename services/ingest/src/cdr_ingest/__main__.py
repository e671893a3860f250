"""`python -m cdr_ingest`: serve the ingest API, served by uvicorn."""

from __future__ import annotations

from cdr_ingest.app import create_app
from cdr_ingest.settings import IngestSettings
from cdrmodel.web import serve


def main() -> None:
    serve(create_app, IngestSettings, "cdr_ingest")


if __name__ == "__main__":
    main()
