"""Monitors: what to check, where, how often, and what counts as up."""
