"""`python -m cdr_ingest`: serve the ingest API, served by uvicorn."""

from __future__ import annotations

import gc

from cdr_ingest.app import create_app
from cdr_ingest.settings import IngestSettings
from cdrmodel.settings import Role
from cdrmodel.web import serve

# A 10,000-record body allocates hundreds of thousands of small objects; with the default
# young-generation threshold (700) the collector ran hundreds of times per body and walked
# everything alive each time it reached the older generations (/v1/cdrs: ~4k -> ~6k CDRs/s
# with these thresholds, same run). Cycles are still collected, just in fewer passes.
GC_THRESHOLDS = (50_000, 20, 1000)


def main(role: Role | None = None) -> None:
    """Also `cdrflow serve ingest` (entry point group cdrflow.services); `role` wins over
    CDR_ROLE."""
    gc.set_threshold(*GC_THRESHOLDS)
    serve(create_app, IngestSettings, "cdr_ingest", role=role)


if __name__ == "__main__":
    main()
