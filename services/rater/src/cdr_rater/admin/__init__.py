"""The rater's admin API: tenants, API accounts, packages, routes, decks, extensions."""
