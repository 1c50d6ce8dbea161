"""Alerts: channels, the notifications built for them, and their delivery (at most once, retried, recorded)."""
