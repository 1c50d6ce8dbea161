"""Counters: fixed windows (login failures, API requests) expired by TTL, a team's count of live API keys, and
backoffs (a sign-in address's failures on one account, with when it may try again)."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute

from chalicelib.storage.base import BaseModel


class CounterModel(BaseModel):
    logical_name = "rate_limits"

    class Meta:
        pass

    key = UnicodeAttribute(hash_key=True)
    hits = NumberAttribute(default=0)
    window_ends = NumberAttribute(null=True)  # a fixed window's end (epoch seconds)
    not_before = NumberAttribute(null=True)  # a backoff's: the epoch second its next attempt may start
    expires_at = TTLAttribute()
