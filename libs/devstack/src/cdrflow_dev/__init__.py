"""The laptop: embedded PostgreSQL and Tansu, the three services as processes, demo data, and
the `cdrflow dev` command. No service imports this package and no image ships it."""
