"""Shared models and plumbing for the cdrflow services."""
