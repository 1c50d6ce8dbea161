"""Incidents: outages confirmed across regions, opened once and resolved once."""
