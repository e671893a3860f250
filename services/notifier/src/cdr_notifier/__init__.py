"""cdrflow notifier: pushes rated CDRs to CRMs and serves the query APIs."""
