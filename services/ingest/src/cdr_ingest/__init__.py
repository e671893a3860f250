"""cdrflow ingest: authenticates, validates and publishes submitted CDRs."""
